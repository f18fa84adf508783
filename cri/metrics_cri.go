package cri

import (
	"context"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/metrics"
	"github.com/berth-dev/berth/imageservice"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/sandbox"
)

// observePull records a successful pull's time and its image's size.
func observePull(svc *imageservice.Service, id string, d time.Duration) {
	var size uint64
	if img, err := svc.Resolve(context.Background(), id); err == nil {
		size = img.Size
	}
	metrics.ObservePull(d, size)
}

// The cAdvisor-style metrics the kubelet serves on /metrics/cadvisor when
// it takes pod and container stats from the CRI (PodAndContainerStatsFromCRI).
// Every metric carries the labels cAdvisor gives a container; network
// metrics belong to the pod (cAdvisor's "POD" container) and add the
// interface.
var (
	containerLabels  = []string{"container", "id", "image", "name", "namespace", "pod"}
	networkLabels    = append(append([]string{}, containerLabels...), "interface")
	memFailureLabels = append(append([]string{}, containerLabels...), "failure_type", "scope")
)

type metricDesc struct {
	name, help string
	labels     []string
	kind       runtimeapi.MetricType
}

var metricDescs = []metricDesc{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", containerLabels, runtimeapi.MetricType_COUNTER},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", containerLabels, runtimeapi.MetricType_GAUGE},
	{"container_memory_working_set_bytes", "Current working set in bytes.", containerLabels, runtimeapi.MetricType_GAUGE},
	{"container_memory_rss", "Size of RSS in bytes.", containerLabels, runtimeapi.MetricType_GAUGE},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", memFailureLabels, runtimeapi.MetricType_COUNTER},
	{"container_processes", "Number of processes running inside the container.", containerLabels, runtimeapi.MetricType_GAUGE},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", containerLabels, runtimeapi.MetricType_GAUGE},
	{"container_fs_inodes_total", "Number of inodes used by the container's writable layer.", containerLabels, runtimeapi.MetricType_GAUGE},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", containerLabels, runtimeapi.MetricType_GAUGE},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", networkLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", networkLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", networkLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", networkLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", networkLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", networkLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", networkLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", networkLabels, runtimeapi.MetricType_COUNTER},
}

var metricKinds = func() map[string]runtimeapi.MetricType {
	m := map[string]runtimeapi.MetricType{}
	for _, d := range metricDescs {
		m[d.name] = d.kind
	}
	return m
}()

func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(metricDescs))
	for _, d := range metricDescs {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// metricSet builds the metrics of one object with its common labels.
type metricSet struct {
	ts     int64
	labels []string
	out    []*runtimeapi.Metric
}

func (ms *metricSet) add(name string, v uint64, extra ...string) {
	ms.out = append(ms.out, &runtimeapi.Metric{
		Name: name, Timestamp: ms.ts, MetricType: metricKinds[name],
		LabelValues: append(append([]string{}, ms.labels...), extra...), Value: u64(v),
	})
}

func containerMetrics(st *container.Stats, pod *sandbox.Sandbox) *runtimeapi.ContainerMetrics {
	r := st.Record
	ms := &metricSet{ts: st.Time.UnixNano(), labels: []string{r.Name, r.Cgroup, r.Image, r.ID, pod.Config.Metadata.Namespace, pod.Config.Metadata.Name}}
	if c := st.CPU; c != nil {
		ms.add("container_cpu_usage_seconds_total", c.UsageNanos/uint64(time.Second))
	}
	if m := st.Memory; m != nil {
		ms.add("container_memory_usage_bytes", m.Usage)
		ms.add("container_memory_working_set_bytes", m.WorkingSet)
		ms.add("container_memory_rss", m.RSS)
		ms.add("container_memory_failures_total", m.PageFaults, "pgfault", "container")
		ms.add("container_memory_failures_total", m.MajorPageFaults, "pgmajfault", "container")
	}
	ms.add("container_fs_usage_bytes", st.Layer.Bytes)
	ms.add("container_fs_inodes_total", st.Layer.Inodes)
	if !r.Status.StartedAt.IsZero() {
		ms.add("container_start_time_seconds", uint64(r.Status.StartedAt.Unix()))
	}
	return &runtimeapi.ContainerMetrics{ContainerId: r.ID, Metrics: ms.out}
}

// podMetrics are the pod's own metrics (network, processes, the pod
// cgroup's CPU and memory as cAdvisor's pod-level container "") and its
// containers'.
func (s *Server) podMetrics(ctx context.Context, st *sandbox.Stats) *runtimeapi.PodSandboxMetrics {
	sb := st.Sandbox
	md := sb.Config.Metadata
	ms := &metricSet{ts: st.Time.UnixNano(), labels: []string{"", sb.Cgroup, "", sb.ID, md.Namespace, md.Name}}
	if c := st.CPU; c != nil {
		ms.add("container_cpu_usage_seconds_total", c.UsageNanos/uint64(time.Second))
	}
	if m := st.Memory; m != nil {
		ms.add("container_memory_usage_bytes", m.Usage)
		ms.add("container_memory_working_set_bytes", m.WorkingSet)
		ms.add("container_memory_rss", m.RSS)
	}
	if st.Processes != nil {
		ms.add("container_processes", *st.Processes)
	}
	if n := st.Network; n != nil {
		// cAdvisor reports a pod's network on its infra ("POD") container.
		nms := &metricSet{ts: n.Time.UnixNano(), labels: []string{"POD", sb.Cgroup, "", sb.ID, md.Namespace, md.Name}}
		for _, i := range n.Interfaces {
			nms.add("container_network_receive_bytes_total", i.RxBytes, i.Name)
			nms.add("container_network_receive_errors_total", i.RxErrors, i.Name)
			nms.add("container_network_receive_packets_total", i.RxPackets, i.Name)
			nms.add("container_network_receive_packets_dropped_total", i.RxDropped, i.Name)
			nms.add("container_network_transmit_bytes_total", i.TxBytes, i.Name)
			nms.add("container_network_transmit_errors_total", i.TxErrors, i.Name)
			nms.add("container_network_transmit_packets_total", i.TxPackets, i.Name)
			nms.add("container_network_transmit_packets_dropped_total", i.TxDropped, i.Name)
		}
		ms.out = append(ms.out, nms.out...)
	}
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID, Metrics: ms.out}
	if m := s.opts.Containers; m != nil {
		for _, cs := range m.ListStats(ctx, container.Filter{PodID: sb.ID}) {
			pm.ContainerMetrics = append(pm.ContainerMetrics, containerMetrics(cs, sb))
		}
	}
	return pm
}

func (s *Server) listPodMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	sts := m.ListStats(sandbox.Filter{})
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(sts))
	for _, st := range sts {
		out = append(out, s.podMetrics(ctx, st))
	}
	return out, nil
}

func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	out, err := s.listPodMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

func (s *Server) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	items, err := s.listPodMetrics(stream.Context())
	if err != nil {
		return err
	}
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
