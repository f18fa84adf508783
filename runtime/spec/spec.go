// Package spec turns a CRI container request, its pod's config and its
// image's config into the OCI runtime spec that berth's runtime executes.
// It is a function of its inputs: the only files it reads are the host
// paths of mounts and devices (which must exist) and the image's
// /etc/passwd and /etc/group through the fs.FS it is given.
package spec

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/userns"
)

// DefaultPath is the PATH of a container whose image sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PodFiles are the pod's files on the host that every container mounts;
// an empty path is not mounted.
type PodFiles struct {
	Hostname   string // → /etc/hostname
	Hosts      string // → /etc/hosts
	ResolvConf string // → /etc/resolv.conf
	Shm        string // → /dev/shm, when the pod has its own IPC namespace
}

// Namespaces are the pod's pinned namespaces (files under the state dir).
type Namespaces struct {
	Net, IPC, UTS string
	// PID is the pod's shared PID namespace (its pause process's), used
	// when the container's PID mode is POD.
	PID string
	// TargetPID is the PID namespace of the container a TARGET mode names.
	TargetPID string
	// User is the pod's own user namespace ("" for the node's), with its
	// maps in UserMapping.
	User        string
	UserMapping *userns.Mapping
}

// Input is everything a container's spec is made of.
type Input struct {
	Config  *runtimeapi.ContainerConfig
	Sandbox *runtimeapi.PodSandboxConfig
	Image   *imagespec.ImageConfig // nil: an image without config
	// RootFS reads the container's image (its /etc/passwd and /etc/group);
	// nil when there is nothing to read, so user and group names fail.
	RootFS fs.FS
	// RootPath is spec.Root.Path: the mounted rootfs, absolute or
	// relative to the bundle.
	RootPath    string
	Pod         PodFiles
	Namespaces  Namespaces
	CgroupsPath string
	// CgroupNamespace gives the container its own cgroup namespace (cgroup
	// v2 hosts).
	CgroupNamespace bool
	// SeccompDefault gives runtime/default to a container whose request
	// names no seccomp profile (berthd's seccomp_default); see Seccomp.
	SeccompDefault bool
	// Rlimits are the node's defaults (the CRI has no field for them);
	// none means the container inherits the shim's.
	Rlimits []specs.POSIXRlimit
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errdefs.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// Generate builds the spec.
func Generate(in Input) (*specs.Spec, error) {
	c := in.Config
	if c == nil {
		return nil, invalid("no container config")
	}
	if in.RootPath == "" {
		return nil, invalid("no rootfs path")
	}
	img := in.Image
	if img == nil {
		img = &imagespec.ImageConfig{}
	}
	sc := c.GetLinux().GetSecurityContext()
	if sc == nil {
		sc = &runtimeapi.LinuxContainerSecurityContext{}
	}
	if sc.GetPrivileged() && !in.Sandbox.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, invalid("a privileged container needs a privileged pod sandbox")
	}

	s := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: in.RootPath, Readonly: sc.GetReadonlyRootfs()},
		Hostname: in.Sandbox.GetHostname(),
		Process:  &specs.Process{Terminal: c.GetTty()},
		Linux: &specs.Linux{
			CgroupsPath: in.CgroupsPath,
			Sysctl:      copyMap(in.Sandbox.GetLinux().GetSysctls()),
		},
	}
	args, err := Args(c.GetCommand(), c.GetArgs(), img.Entrypoint, img.Cmd)
	if err != nil {
		return nil, err
	}
	s.Process.Args = args
	s.Process.Cwd = firstNonEmpty(c.GetWorkingDir(), img.WorkingDir, "/")
	if !path.IsAbs(s.Process.Cwd) {
		return nil, invalid("working dir %q is not absolute", s.Process.Cwd)
	}

	u, err := resolveUser(in.RootFS, sc, img.User)
	if err != nil {
		return nil, err
	}
	s.Process.User = u.User
	s.Process.Env = Env(img.Env, c.GetEnvs(), s.Hostname, u.home)
	s.Process.NoNewPrivileges = sc.GetNoNewPrivs()
	s.Process.Rlimits = append([]specs.POSIXRlimit(nil), in.Rlimits...)

	if s.Process.Capabilities, err = Capabilities(sc); err != nil {
		return nil, err
	}
	if s.Linux.Seccomp, err = Seccomp(sc, s.Process.Capabilities, in.SeccompDefault); err != nil {
		return nil, err
	}
	if err := CheckLSM(sc); err != nil {
		return nil, err
	}
	if s.Linux.Namespaces, err = namespaces(sc.GetNamespaceOptions(), in.Namespaces, in.CgroupNamespace); err != nil {
		return nil, err
	}
	if m := in.Namespaces.UserMapping; m != nil {
		if sc.GetPrivileged() {
			return nil, invalid("a privileged container cannot run in a pod's user namespace")
		}
		s.Linux.UIDMappings, s.Linux.GIDMappings = ociIDMaps(m.UIDs), ociIDMaps(m.GIDs)
	}
	if sc.GetPrivileged() {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	} else {
		s.Linux.MaskedPaths = orDefault(sc.GetMaskedPaths(), DefaultMaskedPaths)
		s.Linux.ReadonlyPaths = orDefault(sc.GetReadonlyPaths(), DefaultReadonlyPaths)
	}
	if s.Mounts, s.Linux.RootfsPropagation, err = mounts(c, sc, in); err != nil {
		return nil, err
	}
	if s.Linux.Resources, s.Process.OOMScoreAdj, err = resources(c.GetLinux().GetResources()); err != nil {
		return nil, err
	}
	if err := devices(s, c.GetDevices(), sc.GetPrivileged()); err != nil {
		return nil, err
	}
	if c.GetAnnotations() != nil {
		s.Annotations = copyMap(c.GetAnnotations())
	}
	return s, nil
}

// Args applies Docker's rules: a command replaces the image's entrypoint
// and drops its cmd; args alone replace the image's cmd.
func Args(command, args, entrypoint, cmd []string) ([]string, error) {
	var out []string
	if len(command) > 0 {
		out = append(append(out, command...), args...)
	} else {
		out = append(out, entrypoint...)
		if len(args) > 0 {
			out = append(out, args...)
		} else {
			out = append(out, cmd...)
		}
	}
	if len(out) == 0 {
		return nil, invalid("no command: the request and the image give none")
	}
	return out, nil
}

// Env merges the image's environment with the request's (the request wins,
// the image's order kept), and adds PATH, HOSTNAME and HOME when missing.
func Env(image []string, request []*runtimeapi.KeyValue, hostname, home string) []string {
	var keys []string
	vals := map[string]string{}
	set := func(kv string, override bool) {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		} else if !override {
			return
		}
		vals[k] = kv
	}
	set(DefaultPath, false)
	for _, kv := range image {
		set(kv, true)
	}
	if hostname != "" {
		set("HOSTNAME="+hostname, true)
	}
	for _, kv := range request {
		set(kv.GetKey()+"="+string(kv.GetValue()), true)
	}
	if home == "" {
		home = "/"
	}
	set("HOME="+home, false)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, vals[k])
	}
	return out
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func orDefault(v, def []string) []string {
	if len(v) > 0 {
		return append([]string{}, v...)
	}
	return append([]string{}, def...)
}

// Containerd's defaults, which the kubelet and critest expect.
var (
	DefaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
		"/sys/devices/virtual/powercap", "/proc/scsi",
	}
	DefaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

func namespaces(o *runtimeapi.NamespaceOption, pod Namespaces, cgroupNS bool) ([]specs.LinuxNamespace, error) {
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	joinPod := func(t specs.LinuxNamespaceType, p, what string) error {
		if p == "" {
			return invalid("the pod has no %s namespace to join", what)
		}
		ns = append(ns, specs.LinuxNamespace{Type: t, Path: p})
		return nil
	}
	switch o.GetNetwork() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		if err := joinPod(specs.NetworkNamespace, pod.Net, "network"); err != nil {
			return nil, err
		}
		// The hostname belongs to the pod's network identity.
		if err := joinPod(specs.UTSNamespace, pod.UTS, "UTS"); err != nil {
			return nil, err
		}
	default:
		return nil, invalid("network namespace mode %s is not supported", o.GetNetwork())
	}
	switch o.GetIpc() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		if err := joinPod(specs.IPCNamespace, pod.IPC, "IPC"); err != nil {
			return nil, err
		}
	default:
		return nil, invalid("IPC namespace mode %s is not supported", o.GetIpc())
	}
	switch o.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		if err := joinPod(specs.PIDNamespace, pod.PID, "shared PID"); err != nil {
			return nil, err
		}
	case runtimeapi.NamespaceMode_CONTAINER:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	case runtimeapi.NamespaceMode_TARGET:
		if o.GetTargetId() == "" || pod.TargetPID == "" {
			return nil, invalid("PID namespace mode TARGET needs a running target container")
		}
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: pod.TargetPID})
	}
	if err := checkUserns(o.GetUsernsOptions(), pod.UserMapping); err != nil {
		return nil, err
	}
	if pod.User != "" {
		// First: nsenter joins it before the others (see runtime/nsenter).
		ns = append([]specs.LinuxNamespace{{Type: specs.UserNamespace, Path: pod.User}}, ns...)
	}
	if cgroupNS {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return ns, nil
}

func resources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, *int, error) {
	// The score is always set: unset, the container would inherit the
	// shim's.
	if r == nil {
		zero := 0
		return &specs.LinuxResources{Devices: defaultDeviceRules()}, &zero, nil
	}
	out, err := Resources(r)
	if err != nil {
		return nil, nil, err
	}
	out.Devices = defaultDeviceRules()
	v := r.GetOomScoreAdj()
	if v < -1000 || v > 1000 {
		return nil, nil, invalid("oom_score_adj %d is out of [-1000, 1000]", v)
	}
	oom := int(v)
	return out, &oom, nil
}

// Resources converts CRI resources into cgroup limits: at create (where
// the device rules are added) and for UpdateContainerResources (where they
// must be left alone).
func Resources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := r.GetCpuShares(); v > 0 {
		u := uint64(v)
		cpu.Shares = &u
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = &v
	}
	if v := r.GetCpuPeriod(); v > 0 {
		u := uint64(v)
		cpu.Period = &u
	}
	if *cpu != (specs.LinuxCPU{}) {
		out.CPU = cpu
	}
	if v := r.GetMemoryLimitInBytes(); v > 0 {
		out.Memory = &specs.LinuxMemory{Limit: &v}
		if sw := r.GetMemorySwapLimitInBytes(); sw > 0 {
			if sw < v {
				return nil, invalid("memory+swap limit %d is below the memory limit %d", sw, v)
			}
			out.Memory.Swap = &sw
		}
	} else if r.GetMemorySwapLimitInBytes() > 0 {
		return nil, invalid("a swap limit needs a memory limit")
	}
	for _, h := range r.GetHugepageLimits() {
		if h.GetPageSize() == "" {
			return nil, invalid("hugepage limit without a page size")
		}
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	out.Unified = copyMap(r.GetUnified())
	return out, nil
}

// sortMounts orders mounts so that a parent is mounted before what is
// mounted below it.
func sortMounts(m []specs.Mount) {
	sort.SliceStable(m, func(i, j int) bool {
		return depth(m[i].Destination) < depth(m[j].Destination)
	})
}

func depth(p string) int {
	p = filepath.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}
