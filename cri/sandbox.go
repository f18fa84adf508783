package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/cri/validate"
	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/spec"
	"github.com/berth-dev/berth/sandbox"
)

func (s *Server) sandboxes() (*sandbox.Manager, error) {
	if s.opts.Sandboxes == nil {
		return nil, fmt.Errorf("pod sandboxes: %w", errdefs.ErrUnimplemented)
	}
	return s.opts.Sandboxes, nil
}

func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	cfg, err := s.podRequest(req)
	if err != nil {
		return nil, err
	}
	unblock := s.opts.NRI.BlockSync()
	id, err := m.Run(ctx, *cfg)
	unblock()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// podRequest is a RunPodSandbox request checked (strings, then what the
// node can honour) and translated: nothing is made for a refused one.
func (s *Server) podRequest(req *runtimeapi.RunPodSandboxRequest) (*sandbox.Config, error) {
	cfg, err := sandboxConfig(req)
	if err != nil {
		return nil, err
	}
	if err := s.checkHandler(req.GetRuntimeHandler()); err != nil {
		return nil, err
	}
	if err := s.podFits(req.GetConfig().GetLinux()); err != nil {
		return nil, err
	}
	return cfg, nil
}

// sandboxConfig translates and validates what the domain side cannot see
// (enums, unsupported modes).
func sandboxConfig(req *runtimeapi.RunPodSandboxRequest) (*sandbox.Config, error) {
	c := req.GetConfig()
	if err := validate.PodSandbox(c); err != nil {
		return nil, err
	}
	md := c.GetMetadata()
	if err := spec.CheckSandboxLSM(c.GetLinux().GetSecurityContext()); err != nil {
		return nil, err
	}
	linux := c.GetLinux()
	nsOpts := linux.GetSecurityContext().GetNamespaceOptions()
	userNS, err := usernsMapping(nsOpts.GetUsernsOptions())
	if err != nil {
		return nil, err
	}
	cfg := &sandbox.Config{
		Metadata:       sandbox.Metadata{Name: md.GetName(), UID: md.GetUid(), Namespace: md.GetNamespace(), Attempt: md.GetAttempt()},
		Hostname:       c.GetHostname(),
		LogDirectory:   c.GetLogDirectory(),
		Labels:         c.GetLabels(),
		Annotations:    c.GetAnnotations(),
		RuntimeHandler: req.GetRuntimeHandler(),
		CgroupParent:   linux.GetCgroupParent(),
		Sysctls:        linux.GetSysctls(),
		Privileged:     proto.Bool(linux.GetSecurityContext().GetPrivileged()),
		HostNetwork:    nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE,
		HostIPC:        nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE,
		HostPID:        nsOpts.GetPid() == runtimeapi.NamespaceMode_NODE,
		SharedPID:      nsOpts.GetPid() == runtimeapi.NamespaceMode_POD,
		UserNS:         userNS,
		Resources:      resources(linux.GetResources()),
		Overhead:       resources(linux.GetOverhead()),
	}
	if dns := c.GetDnsConfig(); dns != nil {
		cfg.DNS = &sandbox.DNSConfig{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	for _, pm := range c.GetPortMappings() {
		proto, ok := map[runtimeapi.Protocol]string{runtimeapi.Protocol_TCP: "tcp", runtimeapi.Protocol_UDP: "udp", runtimeapi.Protocol_SCTP: "sctp"}[pm.GetProtocol()]
		if !ok {
			return nil, fmt.Errorf("port mapping protocol %v: %w", pm.GetProtocol(), errdefs.ErrInvalidArgument)
		}
		if pm.GetHostPort() == 0 {
			// No host port: nothing for portmap to do.
			continue
		}
		cfg.PortMappings = append(cfg.PortMappings, cni.PortMapping{
			HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(), Protocol: proto, HostIP: pm.GetHostIp(),
		})
	}
	return cfg, nil
}

// podFits checks the pod's resources and overhead against the node. An
// overhead is no limit of its own (it is added to the pod's), so only its
// cpusets and page sizes are checked.
func (s *Server) podFits(l *runtimeapi.LinuxPodSandboxConfig) error {
	if err := s.fits("linux.resources", l.GetResources()); err != nil {
		return err
	}
	if o := l.GetOverhead(); o != nil {
		o = proto.Clone(o).(*runtimeapi.LinuxContainerResources)
		o.MemoryLimitInBytes = 0
		return s.fits("linux.overhead", o)
	}
	return nil
}

func resources(r *runtimeapi.LinuxContainerResources) *sandbox.Resources {
	if r == nil {
		return nil
	}
	res := &sandbox.Resources{
		CPUQuota: r.GetCpuQuota(), MemoryLimit: r.GetMemoryLimitInBytes(),
		CpusetCpus: r.GetCpusetCpus(), CpusetMems: r.GetCpusetMems(),
	}
	if v := r.GetCpuShares(); v > 0 {
		res.CPUShares = uint64(v)
	}
	if v := r.GetCpuPeriod(); v > 0 {
		res.CPUPeriod = uint64(v)
	}
	return res
}

func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	if err := m.Stop(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("pod sandbox id: %w: empty", errdefs.ErrInvalidArgument)
	}
	if err := m.Remove(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func podState(ready bool) runtimeapi.PodSandboxState {
	if ready {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func podMetadata(md sandbox.Metadata) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: md.Name, Uid: md.UID, Namespace: md.Namespace, Attempt: md.Attempt}
}

func nsMode(host bool, pod bool) runtimeapi.NamespaceMode {
	switch {
	case host:
		return runtimeapi.NamespaceMode_NODE
	case pod:
		return runtimeapi.NamespaceMode_POD
	default:
		return runtimeapi.NamespaceMode_CONTAINER
	}
}

func (s *Server) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	st, err := m.Status(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	c := st.Config
	status := &runtimeapi.PodSandboxStatus{
		Id:             st.ID,
		Metadata:       podMetadata(c.Metadata),
		State:          podState(st.Ready),
		CreatedAt:      st.CreatedAt.UnixNano(),
		Labels:         c.Labels,
		Annotations:    c.Annotations,
		RuntimeHandler: c.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network:       nsMode(c.HostNetwork, true),
			Ipc:           nsMode(c.HostIPC, true),
			Pid:           nsMode(c.HostPID, c.SharedPID),
			UsernsOptions: usernsOptions(c.UserNS),
		}}},
	}
	if !c.HostNetwork && len(st.IPs) > 0 {
		status.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: st.IPs[0]}
		for _, ip := range st.IPs[1:] {
			status.Network.AdditionalIps = append(status.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: status}
	if req.GetVerbose() {
		info := map[string]any{
			"pid": st.ShimPid, "pausePid": st.PausePid, "stateDir": st.StateDir, "cgroup": st.Cgroup,
			"userns": st.UserNS, "netns": st.NetNS, "ipcns": st.IPCNS, "utsns": st.UTSNS, "pidns": st.PIDNS, "shmPath": st.ShmPath,
			"network": st.Network, "networkAttached": st.NetworkAttached, "recordedState": st.State,
			"notReadyReason": st.Reason, "config": c,
		}
		b, err := json.Marshal(info)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func podFilter(f *runtimeapi.PodSandboxFilter) sandbox.Filter {
	filter := sandbox.Filter{ID: f.GetId(), LabelSelector: f.GetLabelSelector()}
	if sv := f.GetState(); sv != nil {
		st := sandbox.StateNotReady
		if sv.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			st = sandbox.StateReady
		}
		filter.State = &st
	}
	return filter
}

func toPodSandbox(st *sandbox.Status) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id: st.ID, Metadata: podMetadata(st.Config.Metadata), State: podState(st.Ready),
		CreatedAt: st.CreatedAt.UnixNano(), Labels: st.Config.Labels, Annotations: st.Config.Annotations,
		RuntimeHandler: st.Config.RuntimeHandler,
	}
}

func (s *Server) podSandboxes(m *sandbox.Manager, f sandbox.Filter) []*runtimeapi.PodSandbox {
	all := f.ID == "" && f.State == nil && len(f.LabelSelector) == 0
	return s.replies.podSandboxes(m.List(f), all)
}

func (s *Server) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: s.podSandboxes(m, podFilter(req.GetFilter()))}, nil
}

// streamChunk bounds one StreamPodSandboxes message.
const streamChunk = 200

func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	m, err := s.sandboxes()
	if err != nil {
		return err
	}
	items := s.podSandboxes(m, podFilter(req.GetFilter()))
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
