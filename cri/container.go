package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/validate"
	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/container"
)

func (s *Server) containers() (*container.Manager, error) {
	if s.opts.Containers == nil {
		return nil, fmt.Errorf("containers: %w", errdefs.ErrUnimplemented)
	}
	return s.opts.Containers, nil
}

func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if err := s.checkCreate(req); err != nil {
		return nil, err
	}
	unblock := s.opts.NRI.BlockSync()
	id, err := m.Create(ctx, req.GetPodSandboxId(), req.GetConfig(), req.GetSandboxConfig())
	unblock()
	if err != nil {
		return nil, err
	}
	s.opts.NRI.ContainerCreated(ctx, id)
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// checkCreate refuses a CreateContainer request whose strings or resources
// could not be honoured, before anything is made.
func (s *Server) checkCreate(req *runtimeapi.CreateContainerRequest) error {
	if err := validate.Container(req.GetConfig()); err != nil {
		return err
	}
	if err := s.fits("linux.resources", req.GetConfig().GetLinux().GetResources()); err != nil {
		return err
	}
	if pc := req.GetSandboxConfig(); pc != nil {
		if err := validate.PodSandbox(pc); err != nil {
			return fmt.Errorf("sandbox_config: %w", err)
		}
	}
	return nil
}

func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if err := s.opts.NRI.ContainerStarting(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	if err := m.Start(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	s.opts.NRI.ContainerStarted(ctx, req.GetContainerId())
	return &runtimeapi.StartContainerResponse{}, nil
}

func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("stop timeout %d: %w: negative", req.GetTimeout(), errdefs.ErrInvalidArgument)
	}
	if err := m.Stop(ctx, req.GetContainerId(), time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	s.opts.NRI.ContainerStopped(ctx, req.GetContainerId())
	return &runtimeapi.StopContainerResponse{}, nil
}

func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("container id: %w: empty", errdefs.ErrInvalidArgument)
	}
	var gone *container.Record // what NRI plugins are told of
	if s.opts.NRI != nil {
		gone, _ = m.Status(ctx, req.GetContainerId())
	}
	if err := m.Remove(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	s.opts.NRI.ContainerRemoved(ctx, gone)
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// containerState maps berth's states to the CRI's.
func containerState(st container.State) runtimeapi.ContainerState {
	switch st {
	case container.Created:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case container.Running:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case container.Exited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	default:
		return runtimeapi.ContainerState_CONTAINER_UNKNOWN
	}
}

func stateOf(st runtimeapi.ContainerState) container.State {
	switch st {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return container.Created
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return container.Running
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return container.Exited
	default:
		return container.Unknown
	}
}

func containerFilter(f *runtimeapi.ContainerFilter) container.Filter {
	cf := container.Filter{ID: f.GetId(), PodID: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
	if sv := f.GetState(); sv != nil {
		st := stateOf(sv.GetState())
		cf.State = &st
	}
	return cf
}

func statsFilter(f *runtimeapi.ContainerStatsFilter) container.Filter {
	return container.Filter{ID: f.GetId(), PodID: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
}

func containerMetadata(r *container.Record) *runtimeapi.ContainerMetadata {
	return &runtimeapi.ContainerMetadata{Name: r.Name, Attempt: r.Attempt}
}

// imageSpec reports the image as the user named it, as CRI-O and
// containerd do: the kubelet creates with the image id and the pod spec's
// name beside it, and shows this field as the container's image (a pod whose
// image was updated waits to see the new name there).
func imageSpec(r *container.Record) *runtimeapi.ImageSpec {
	name := r.UserImage
	if name == "" {
		name = r.Image
	}
	return &runtimeapi.ImageSpec{Image: name, UserSpecifiedImage: name}
}

func toContainer(r *container.Record) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: r.ID, PodSandboxId: r.PodID, Metadata: containerMetadata(r),
		Image: imageSpec(r), ImageRef: r.ImageRef, ImageId: r.ImageID,
		State: containerState(r.Status.State), CreatedAt: r.Status.CreatedAt.UnixNano(),
		Labels: r.Labels, Annotations: r.Annotations,
	}
}

func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	f := containerFilter(req.GetFilter())
	return &runtimeapi.ListContainersResponse{Containers: s.replies.containers(m.List(ctx, f), f.All())}, nil
}

func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	m, err := s.containers()
	if err != nil {
		return err
	}
	f := containerFilter(req.GetFilter())
	items := s.replies.containers(m.List(stream.Context(), f), f.All())
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := stream.Send(&runtimeapi.StreamContainersResponse{Containers: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// stopSignal is the CRI enum of a signal name ("SIGTERM"); unknown or
// empty names are the runtime default.
func stopSignal(name string) runtimeapi.Signal {
	name = strings.ToUpper(name)
	if n, err := strconv.Atoi(name); err == nil {
		name = unix.SignalName(syscall.Signal(n))
	}
	if name == "" {
		name = "SIGTERM"
	}
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	return runtimeapi.Signal(runtimeapi.Signal_value["SIGNAL_"+name])
}

func containerStatus(r *container.Record) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id: r.ID, Metadata: containerMetadata(r), State: containerState(r.Status.State),
		CreatedAt: r.Status.CreatedAt.UnixNano(), StartedAt: unixNanoOrZero(r.Status.StartedAt),
		FinishedAt: unixNanoOrZero(r.Status.FinishedAt), ExitCode: r.Status.ExitCode,
		Image: imageSpec(r), ImageRef: r.ImageRef, ImageId: r.ImageID,
		Reason: r.Status.Reason, Message: r.Status.Message,
		Labels: r.Labels, Annotations: r.Annotations, LogPath: r.LogPath,
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: r.UID, Gid: r.GID, SupplementalGroups: r.SupplementalGIDs,
		}},
		StopSignal: stopSignal(r.StopSignal),
	}
	for _, mnt := range r.Mounts {
		m := &runtimeapi.Mount{
			ContainerPath: mnt.ContainerPath, HostPath: mnt.HostPath, Readonly: mnt.Readonly,
			RecursiveReadOnly: mnt.RecursiveRO, SelinuxRelabel: mnt.SELinuxRelabel,
			Propagation: runtimeapi.MountPropagation(mnt.Propagation), ImageSubPath: mnt.ImageSubPath,
		}
		if mnt.Image != "" {
			m.Image = &runtimeapi.ImageSpec{Image: mnt.Image, ImageRef: mnt.ImageID}
		}
		st.Mounts = append(st.Mounts, m)
	}
	if res := r.Resources; res != nil {
		st.Resources = &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{
			CpuPeriod: res.CPUPeriod, CpuQuota: res.CPUQuota, CpuShares: res.CPUShares,
			MemoryLimitInBytes: res.MemoryLimit, OomScoreAdj: res.OOMScoreAdj,
			CpusetCpus: res.CpusetCpus, CpusetMems: res.CpusetMems,
			MemorySwapLimitInBytes: res.MemorySwapLimit, Unified: res.Unified,
		}}
	}
	return st
}

func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	r, err := m.Status(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: containerStatus(r)}
	if req.GetVerbose() {
		b, err := json.Marshal(container.InfoOf(r))
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if err := validate.Resources("linux", req.GetLinux()); err != nil {
		return nil, err
	}
	if err := s.fits("linux", req.GetLinux()); err != nil {
		return nil, err
	}
	linux, err := s.nriUpdate(ctx, req.GetContainerId(), req.GetLinux())
	if err != nil {
		return nil, err
	}
	if err := m.UpdateResources(ctx, req.GetContainerId(), linux); err != nil {
		return nil, err
	}
	s.opts.NRI.ContainerUpdated(ctx, req.GetContainerId())
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if err := m.ReopenLog(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("exec timeout %d: %w: negative", req.GetTimeout(), errdefs.ErrInvalidArgument)
	}
	if err := validate.ExecCmd(req.GetCmd()); err != nil {
		return nil, err
	}
	res, err := m.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: int32(res.ExitCode)}, nil
}

func containerStats(st *container.Stats) *runtimeapi.ContainerStats {
	r := st.Record
	ts := st.Time.UnixNano()
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id: r.ID, Metadata: containerMetadata(r), Labels: r.Labels, Annotations: r.Annotations,
		},
		WritableLayer: &runtimeapi.FilesystemUsage{
			Timestamp:  ts,
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: st.Layer.Mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: st.Layer.Bytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: st.Layer.Inodes},
		},
	}
	if c := st.CPU; c != nil {
		out.Cpu = &runtimeapi.CpuUsage{
			Timestamp:            ts,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: c.UsageNanos},
			UsageNanoCores:       &runtimeapi.UInt64Value{Value: c.NanoCores},
		}
	}
	if mem := st.Memory; mem != nil {
		out.Memory = &runtimeapi.MemoryUsage{
			Timestamp:       ts,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: mem.WorkingSet},
			UsageBytes:      &runtimeapi.UInt64Value{Value: mem.Usage},
			RssBytes:        &runtimeapi.UInt64Value{Value: mem.RSS},
			PageFaults:      &runtimeapi.UInt64Value{Value: mem.PageFaults},
			MajorPageFaults: &runtimeapi.UInt64Value{Value: mem.MajorPageFaults},
		}
	}
	return out
}

func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	st, err := m.Stats(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: containerStats(st)}, nil
}

func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	sts := m.ListStats(ctx, statsFilter(req.GetFilter()))
	out := make([]*runtimeapi.ContainerStats, 0, len(sts))
	for _, st := range sts {
		out = append(out, containerStats(st))
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	m, err := s.containers()
	if err != nil {
		return err
	}
	sts := m.ListStats(stream.Context(), statsFilter(req.GetFilter()))
	for len(sts) > 0 {
		n := min(len(sts), streamChunk)
		items := make([]*runtimeapi.ContainerStats, 0, n)
		for _, st := range sts[:n] {
			items = append(items, containerStats(st))
		}
		if err := stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: items}); err != nil {
			return err
		}
		sts = sts[n:]
	}
	return nil
}
