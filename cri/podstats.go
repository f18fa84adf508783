package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/sandbox"
)

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

// podStats joins the pod's own stats with those of its containers.
func (s *Server) podStats(st *sandbox.Stats, ctrs []*container.Stats) *runtimeapi.PodSandboxStats {
	sb := st.Sandbox
	ts := st.Time.UnixNano()
	linux := &runtimeapi.LinuxPodSandboxStats{}
	if c := st.CPU; c != nil {
		linux.Cpu = &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: u64(c.UsageNanos), UsageNanoCores: u64(c.NanoCores)}
	}
	if mem := st.Memory; mem != nil {
		linux.Memory = &runtimeapi.MemoryUsage{
			Timestamp: ts, WorkingSetBytes: u64(mem.WorkingSet), UsageBytes: u64(mem.Usage),
			RssBytes: u64(mem.RSS), PageFaults: u64(mem.PageFaults), MajorPageFaults: u64(mem.MajorPageFaults),
		}
	}
	if st.Processes != nil {
		linux.Process = &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: u64(*st.Processes)}
	}
	if n := st.Network; n != nil {
		nu := &runtimeapi.NetworkUsage{Timestamp: n.Time.UnixNano()}
		for _, i := range n.Interfaces {
			iu := &runtimeapi.NetworkInterfaceUsage{
				Name: i.Name, RxBytes: u64(i.RxBytes), RxErrors: u64(i.RxErrors), TxBytes: u64(i.TxBytes), TxErrors: u64(i.TxErrors),
			}
			nu.Interfaces = append(nu.Interfaces, iu)
			if i.Name == sandbox.DefaultInterface {
				nu.DefaultInterface = iu
			}
		}
		linux.Network = nu
	}
	for _, cs := range ctrs {
		linux.Containers = append(linux.Containers, containerStats(cs))
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id: sb.ID, Metadata: podMetadata(sb.Config.Metadata), Labels: sb.Config.Labels, Annotations: sb.Config.Annotations,
		},
		Linux: linux,
	}
}

func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	st, err := m.Stats(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.podStats(st, s.containerStatsOf(st)[st.Sandbox.ID])}, nil
}

// containerStatsOf reads the stats of the containers of the pods in sts,
// in one pass over the containers.
func (s *Server) containerStatsOf(sts ...*sandbox.Stats) map[string][]*container.Stats {
	m := s.opts.Containers
	if m == nil || len(sts) == 0 {
		return nil
	}
	pods := make(map[string]bool, len(sts))
	for _, st := range sts {
		pods[st.Sandbox.ID] = true
	}
	return m.ListStatsByPod(pods)
}

func podStatsFilter(f *runtimeapi.PodSandboxStatsFilter) sandbox.Filter {
	return sandbox.Filter{ID: f.GetId(), LabelSelector: f.GetLabelSelector()}
}

func (s *Server) listPodStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	sts := m.ListStats(podStatsFilter(f))
	ctrs := s.containerStatsOf(sts...)
	out := make([]*runtimeapi.PodSandboxStats, 0, len(sts))
	for _, st := range sts {
		out = append(out, s.podStats(st, ctrs[st.Sandbox.ID]))
	}
	return out, nil
}

func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	out, err := s.listPodStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	items, err := s.listPodStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
