package nri

import (
	api "github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/sandbox"
)

// podOf is what plugins see of a pod.
func podOf(sb *sandbox.Sandbox) *api.PodSandbox {
	c := sb.Config
	pid := sb.PausePid
	if pid == 0 {
		pid = sb.ShimPid
	}
	p := &api.PodSandbox{
		Id: sb.ID, Name: c.Metadata.Name, Uid: c.Metadata.UID, Namespace: c.Metadata.Namespace,
		Labels: c.Labels, Annotations: c.Annotations, RuntimeHandler: c.RuntimeHandler,
		Pid: uint32(pid), Ips: sb.IPs,
		Linux: &api.LinuxPodSandbox{
			CgroupParent: c.CgroupParent, CgroupsPath: sb.Cgroup,
			PodResources: podResources(c.Resources), PodOverhead: podResources(c.Overhead),
		},
	}
	for typ, path := range map[string]string{"network": sb.NetNS, "ipc": sb.IPCNS, "uts": sb.UTSNS, "pid": sb.PIDNS, "user": sb.UserNS} {
		if path != "" {
			p.Linux.Namespaces = append(p.Linux.Namespaces, &api.LinuxNamespace{Type: typ, Path: path})
		}
	}
	return p
}

func podResources(r *sandbox.Resources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems}, Memory: &api.LinuxMemory{}}
	if r.CPUShares > 0 {
		out.Cpu.Shares = api.UInt64(r.CPUShares)
	}
	if r.CPUQuota != 0 {
		out.Cpu.Quota = api.Int64(r.CPUQuota)
	}
	if r.CPUPeriod > 0 {
		out.Cpu.Period = api.UInt64(r.CPUPeriod)
	}
	if r.MemoryLimit > 0 {
		out.Memory.Limit = api.Int64(r.MemoryLimit)
	}
	return out
}

func containerState(st container.State) api.ContainerState {
	switch st {
	case container.Created:
		return api.ContainerState_CONTAINER_CREATED
	case container.Running:
		return api.ContainerState_CONTAINER_RUNNING
	case container.Exited:
		return api.ContainerState_CONTAINER_STOPPED
	default:
		return api.ContainerState_CONTAINER_UNKNOWN
	}
}

// containerOf is what plugins see of a container: its record, and its
// spec when known.
func containerOf(rec *container.Record, s *specs.Spec) *api.Container {
	c := &api.Container{
		Id: rec.ID, PodSandboxId: rec.PodID, Name: rec.Name, State: containerState(rec.Status.State),
		Labels: rec.Labels, Annotations: rec.Annotations, Pid: uint32(rec.Status.Pid),
		CreatedAt: unixNano(rec.Status.CreatedAt.UnixNano()), ExitCode: rec.Status.ExitCode,
		StatusReason: rec.Status.Reason, StatusMessage: rec.Status.Message,
	}
	if !rec.Status.StartedAt.IsZero() {
		c.StartedAt = rec.Status.StartedAt.UnixNano()
	}
	if !rec.Status.FinishedAt.IsZero() {
		c.FinishedAt = rec.Status.FinishedAt.UnixNano()
	}
	if s == nil {
		return c
	}
	if p := s.Process; p != nil {
		c.Args, c.Env = p.Args, p.Env
		for _, r := range p.Rlimits {
			c.Rlimits = append(c.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
		c.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: p.User.AdditionalGids}
	}
	c.Mounts = api.FromOCIMounts(s.Mounts)
	c.Hooks = api.FromOCIHooks(s.Hooks)
	if l := s.Linux; l != nil {
		c.Linux = &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, nil),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      l.Sysctl,
		}
		if l.Seccomp != nil {
			c.Linux.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		if s.Process != nil && s.Process.OOMScoreAdj != nil {
			c.Linux.OomScoreAdj = api.Int(*s.Process.OOMScoreAdj)
		}
	}
	return c
}

func unixNano(v int64) int64 {
	if v < 0 {
		return 0
	}
	return v
}

// criResources is what a container update asks for, in the CRI's terms
// (berth's UpdateContainerResources takes those).
func criResources(r *api.LinuxResources) *runtimeapi.LinuxContainerResources {
	if r == nil {
		return nil
	}
	out := &runtimeapi.LinuxContainerResources{Unified: r.Unified}
	if c := r.Cpu; c != nil {
		out.CpuPeriod = int64(c.Period.GetValue())
		out.CpuQuota = c.Quota.GetValue()
		out.CpuShares = int64(c.Shares.GetValue())
		out.CpusetCpus, out.CpusetMems = c.Cpus, c.Mems
	}
	if m := r.Memory; m != nil {
		out.MemoryLimitInBytes = m.Limit.GetValue()
		out.MemorySwapLimitInBytes = m.Swap.GetValue()
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	return out
}

// nriResources is a CRI resources request in NRI's terms.
func nriResources(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Cpu:     &api.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems},
		Memory:  &api.LinuxMemory{},
		Unified: r.Unified,
	}
	if r.CpuShares > 0 {
		out.Cpu.Shares = api.UInt64(uint64(r.CpuShares))
	}
	if r.CpuQuota != 0 {
		out.Cpu.Quota = api.Int64(r.CpuQuota)
	}
	if r.CpuPeriod > 0 {
		out.Cpu.Period = api.UInt64(uint64(r.CpuPeriod))
	}
	if r.MemoryLimitInBytes > 0 {
		out.Memory.Limit = api.Int64(r.MemoryLimitInBytes)
	}
	if r.MemorySwapLimitInBytes != 0 {
		out.Memory.Swap = api.Int64(r.MemorySwapLimitInBytes)
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	return out
}

// criOf is a spec's resources (after adjustment) as the CRI would have
// asked for them, to check against the node.
func criOf(s *specs.Spec) *runtimeapi.LinuxContainerResources {
	if s.Linux == nil || s.Linux.Resources == nil {
		return nil
	}
	return criResources(api.FromOCILinuxResources(s.Linux.Resources, nil))
}
