package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/cdi"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/rootfs"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/spec"
)

// Names inside a container's state dir.
const (
	specFile  = "config.json"
	rootfsDir = "rootfs"
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errdefs.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// validate refuses what no later step could make sense of.
func validate(podID string, cfg *runtimeapi.ContainerConfig) error {
	switch {
	case podID == "":
		return invalid("pod sandbox id is empty")
	case cfg == nil:
		return invalid("container config is missing")
	case cfg.GetMetadata() == nil || cfg.GetMetadata().GetName() == "":
		return invalid("container metadata name is empty")
	case cfg.GetImage() == nil || cfg.GetImage().GetImage() == "":
		return invalid("container image is empty")
	}
	for _, mnt := range cfg.GetMounts() {
		if mnt.GetContainerPath() == "" || !path.IsAbs(mnt.GetContainerPath()) {
			return invalid("mount container path %q is not absolute", mnt.GetContainerPath())
		}
		if mnt.GetImage().GetImage() == "" && mnt.GetHostPath() == "" {
			return invalid("mount at %s has no host path", mnt.GetContainerPath())
		}
		if mnt.GetImage().GetImage() != "" && !mnt.GetReadonly() {
			return invalid("image volume at %s must be read-only", mnt.GetContainerPath())
		}
	}
	if lp := cfg.GetLogPath(); lp != "" && (filepath.IsAbs(lp) || !filepath.IsLocal(lp)) {
		return invalid("log path %q must be relative to the pod's log directory", lp)
	}
	return nil
}

// undo collects the steps that revert a half-done create, run in reverse.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// createTimeout bounds a create that goes on after its caller gave up.
const createTimeout = 4 * time.Minute

// Create makes a container in a ready pod, stopped before its command
// until Start. Any failure undoes every step: no record, mount, dir, lease
// or process is left behind. The work is detached from ctx: when ctx ends
// first the container is still made, and a retry with the same pod, name
// and attempt (the kubelet's, after its deadline) gets it instead of
// AlreadyExists.
func (m *Manager) Create(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig, podCfg *runtimeapi.PodSandboxConfig) (string, error) {
	if err := validate(podID, cfg); err != nil {
		return "", err
	}
	key := nameKey(podID, cfg.GetMetadata().GetName(), cfg.GetMetadata().GetAttempt())
	stillThere := func(id string) bool {
		_, err := m.store.Get(id)
		return err == nil
	}
	return m.creates.Do(ctx, key, stillThere, func(ctx context.Context) (string, error) {
		return m.create(ctx, podID, cfg, podCfg)
	})
}

func (m *Manager) create(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig, podCfg *runtimeapi.PodSandboxConfig) (_ string, err error) {
	steps := newStepTimer()
	pod, err := m.opts.Pods.Pod(podID)
	if err != nil {
		return "", err
	}
	if !pod.Ready {
		return "", fmt.Errorf("pod sandbox %s is not ready: %w", pod.ID, errdefs.ErrFailedPrecondition)
	}
	cdiDevices, err := cdi.Requested(cfg)
	if err != nil {
		return "", err
	}
	if err := m.opts.CDI.Check(cdiDevices); err != nil {
		return "", err
	}
	steps.mark("pod")
	restore, cfg, err := m.checkpointSource(ctx, cfg)
	if err != nil {
		return "", err
	}
	ref := cfg.GetImage().GetImage()
	img, err := m.opts.Images.Resolve(ctx, ref)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return "", fmt.Errorf("image %q not found (pull it first): %w", ref, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("resolve image %q: %w", ref, err)
	}

	steps.mark("image")
	// Not the named result: a failing return empties that before the
	// undo steps run.
	id := newID()
	md := cfg.GetMetadata()
	rec := &Record{
		ID:          id,
		PodID:       pod.ID,
		Name:        md.GetName(),
		Attempt:     md.GetAttempt(),
		Image:       ref,
		UserImage:   cfg.GetImage().GetUserSpecifiedImage(),
		ImageID:     img.ID,
		ImageRef:    imageRef(img),
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Mounts:      mountsOf(cfg.GetMounts()),
		Status:      Status{State: Created, CreatedAt: time.Now()},
		ShimDir:     pod.StateDir,
		StateDir:    filepath.Join(m.stateDir, id),
		LayerDir:    filepath.Join(m.layerDir, id),
		Cgroup:      path.Join(pod.Cgroup, id),
		StopSignal:  img.Config.Config.StopSignal,
		Tty:         cfg.GetTty(),
		Stdin:       cfg.GetStdin(),
		StdinOnce:   cfg.GetStdinOnce(),
		Resources:   resourcesOf(cfg.GetLinux().GetResources()),
		CDIDevices:  cdiDevices,
	}
	if sig := cfg.GetStopSignal(); sig != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		rec.StopSignal = strings.TrimPrefix(sig.String(), "SIGNAL_")
	}
	logDir := pod.LogDirectory
	if logDir == "" {
		logDir = podCfg.GetLogDirectory()
	}
	if logDir != "" && cfg.GetLogPath() != "" {
		if err := checkLogPath(logDir, cfg.GetLogPath()); err != nil {
			return "", err
		}
		rec.LogPath = filepath.Join(logDir, cfg.GetLogPath())
	}

	// The name is checked first, so that a duplicate touches nothing;
	// creates of one name do not race (Create runs one at a time per
	// name), and Store.Add enforces it again.
	if taken, ok := m.store.NameTaken(rec.PodID, rec.Name, rec.Attempt); ok {
		return "", fmt.Errorf("container name %q (attempt %d) in pod %s is taken by %s: %w", rec.Name, rec.Attempt, rec.PodID, taken, errdefs.ErrAlreadyExists)
	}

	// Registered before the undo steps, so it ends after them: a failed
	// create's record is gone before anyone may read it as lost.
	done := m.beginMaking(id)
	defer func() {
		done()
		if err != nil {
			m.forget(id)
		}
	}()
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	// Dirs without a record are removed at start-up: a crash from here on
	// leaves nothing behind.
	rootPath := filepath.Join(rec.StateDir, rootfsDir)
	u.add(func() {
		if derr := removeDirs(rec.StateDir); derr != nil {
			klog.ErrorS(derr, "Undo create: remove state dir", "container", id)
		}
		if derr := os.RemoveAll(rec.LayerDir); derr != nil {
			klog.ErrorS(derr, "Undo create: remove layer dir", "container", id)
		}
	})
	if err := os.MkdirAll(rootPath, 0o755); err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	m.exits.add(id, rec.StateDir)
	if err := os.MkdirAll(rec.LayerDir, 0o700); err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	if err := rootfs.Mount(rootPath, withIDMap(layers(rec, img.LayerDirs), pod)); err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	if err := restore.prepare(rec.LayerDir, rootPath); err != nil {
		return "", err
	}
	steps.mark("rootfs")

	if cfg, err = m.imageVolumes(ctx, rec, pod, cfg, &u); err != nil {
		return "", err
	}
	s, err := m.generate(rec, rootPath, pod, img, cfg, podCfg)
	if err != nil {
		return "", err
	}
	if err := m.runAdjust(ctx, rec, s, &u); err != nil {
		return "", err
	}
	rec.Hooks = hasHooks(s)
	if err := boundCaps(s); err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	steps.mark("spec")
	user := s.Process.User
	rec.UID, rec.GID = int64(user.UID), int64(user.GID)
	for _, g := range user.AdditionalGids {
		rec.SupplementalGIDs = append(rec.SupplementalGIDs, int64(g))
	}
	data, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode spec of %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(rec.StateDir, specFile), data, 0o600); err != nil {
		return "", fmt.Errorf("write spec of %s: %w", id, err)
	}
	if err := writeSeccomp(rec.StateDir, s); err != nil {
		return "", fmt.Errorf("write seccomp program of %s: %w", id, err)
	}
	if rec.LogPath != "" {
		// The shim makes what is below the pod's log directory,
		// without following a symlink.
		if err := makeLogDir(logDir); err != nil {
			return "", fmt.Errorf("create log dir of %s: %w", id, err)
		}
	}
	steps.mark("bundle")

	// The cgroup is berthd's to make (with the limits) and to remove; the
	// shim puts the process in it. It is made while the record and the
	// image lease are written.
	cgDone := make(chan error, 1)
	go func() {
		_, err := cgroups.Create(rec.Cgroup, s.Linux.Resources)
		cgDone <- err
	}()
	u.add(func() { killCgroup(rec.Cgroup) })
	cgErr := func() error {
		if cgDone == nil {
			return nil
		}
		err := <-cgDone
		cgDone = nil
		return err
	}
	defer func() { _ = cgErr() }()

	// The record and the image lease are one commit (each commit syncs
	// the disk twice). The lease comes after the mount: an image removed
	// meanwhile fails it, and the create is undone.
	if err := m.store.AddWith(rec, func(put func(tx *bolt.Tx) error) error {
		return m.opts.Images.AddUserWith(img.ID, id, put)
	}); err != nil {
		return "", fmt.Errorf("record container %s and lease image %s: %w", id, img.ID, err)
	}
	u.add(func() {
		if derr := m.store.Delete(id); derr != nil {
			klog.ErrorS(derr, "Undo create: delete record", "container", id)
		}
	})
	u.add(func() {
		if derr := m.opts.Images.RemoveUser(id); derr != nil {
			klog.ErrorS(derr, "Undo create: release image", "container", id)
		}
	})
	steps.mark("record+lease")
	if err := cgErr(); err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	steps.mark("cgroup")

	client := shim.Connect(rec.ShimDir)
	var st shim.ContainerState
	u.add(func() {
		// A fresh context: the request's may be what failed.
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if derr := client.Call(dctx, shim.OpDelete, shim.IDArgs{ID: id}, nil); derr != nil {
			klog.ErrorS(derr, "Undo create: delete in shim", "container", id)
		}
	})
	err = client.Call(ctx, shim.OpCreate, shim.CreateArgs{
		ID: id, BundleDir: rec.StateDir, StateDir: rec.StateDir, LogPath: rec.LogPath, LogDir: logDir,
		Stdin: rec.Stdin, StdinOnce: rec.StdinOnce, Tty: rec.Tty,
		RestoreFrom: restore.imagesDir(), CRIU: restore.criuPath(),
	}, &st)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	// With createContainer hooks, the shim ran these before them.
	if !st.NodeHooksRan {
		if err := createHooks(ctx, rec, s, st.Pid); err != nil {
			return "", fmt.Errorf("create container %s: %w", id, err)
		}
	}
	steps.mark("shim")
	// The pid is recorded at Start (or by the next status): one database
	// write less on the create path.
	klog.V(2).InfoS("Container created", "container", id, "pod", pod.ID, "name", rec.Name, "pid", st.Pid, "steps", steps)
	return id, nil
}

func (m *Manager) generate(rec *Record, rootPath string, pod *Pod, img *Image, cfg *runtimeapi.ContainerConfig, podCfg *runtimeapi.PodSandboxConfig) (*specs.Spec, error) {
	root, err := os.OpenRoot(rootPath)
	if err != nil {
		return nil, fmt.Errorf("open rootfs of %s: %w", rec.ID, err)
	}
	defer root.Close()
	cfg = followPod(cfg, pod)
	ns := pod.Namespaces
	if o := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); o.GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, err := m.targetPIDNamespace(o.GetTargetId())
		if err != nil {
			return nil, err
		}
		ns.TargetPID = target
	}
	s, err := spec.Generate(spec.Input{
		Config:          cfg,
		Sandbox:         withPodConfig(podCfg, pod),
		Image:           &img.Config.Config,
		RootFS:          root.FS(),
		RootPath:        rootPath,
		Pod:             pod.Files,
		Namespaces:      ns,
		CgroupsPath:     rec.Cgroup,
		CgroupNamespace: m.opts.CgroupNamespace,
		SeccompDefault:  m.opts.SeccompDefault,
	})
	if err != nil {
		return nil, err
	}
	if err := m.opts.CDI.InjectDevices(s, rec.CDIDevices...); err != nil {
		return nil, fmt.Errorf("create container %s: %w", rec.ID, err)
	}
	return s, nil
}

// followPod makes a container's namespace options agree with its pod's,
// as containerd does: the network and IPC namespaces are always the pod's
// (the node's for a host-network or host-IPC pod), and a container that
// asks for the pod's PID namespace in a pod without a shared one gets its
// own. A request without namespace options (crictl's) thus just works.
func followPod(cfg *runtimeapi.ContainerConfig, pod *Pod) *runtimeapi.ContainerConfig {
	o := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	want := &runtimeapi.NamespaceOption{
		Network:       podMode(pod.Namespaces.Net),
		Ipc:           podMode(pod.Namespaces.IPC),
		Pid:           o.GetPid(),
		TargetId:      o.GetTargetId(),
		UsernsOptions: o.GetUsernsOptions(),
	}
	if want.Pid == runtimeapi.NamespaceMode_POD && pod.Namespaces.PID == "" {
		want.Pid = runtimeapi.NamespaceMode_CONTAINER
	}
	if o.GetNetwork() == want.Network && o.GetIpc() == want.Ipc && o.GetPid() == want.Pid {
		return cfg
	}
	c := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	if c.Linux == nil {
		c.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if c.Linux.SecurityContext == nil {
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	c.Linux.SecurityContext.NamespaceOptions = want
	return c
}

func podMode(pin string) runtimeapi.NamespaceMode {
	if pin == "" {
		return runtimeapi.NamespaceMode_NODE
	}
	return runtimeapi.NamespaceMode_POD
}

// targetPIDNamespace is the PID namespace of a running container, for a
// container that asks to share it.
func (m *Manager) targetPIDNamespace(target string) (string, error) {
	if target == "" {
		return "", invalid("PID namespace mode TARGET without a target container")
	}
	tid, err := m.resolveID(target)
	if err != nil {
		return "", err
	}
	r, err := m.store.Get(tid)
	if err != nil {
		return "", err
	}
	if r.Status.State != Running || r.Status.Pid == 0 {
		return "", fmt.Errorf("target container %s of the PID namespace is not running: %w", tid, errdefs.ErrFailedPrecondition)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", r.Status.Pid), nil
}

func layers(rec *Record, lower []string) rootfs.Layers {
	return rootfs.Layers{
		Lower: lower,
		Upper: filepath.Join(rec.LayerDir, "upper"),
		Work:  filepath.Join(rec.LayerDir, "work"),
	}
}

// withIDMap shows the layers through the pod's user namespace, if it has
// one.
func withIDMap(l rootfs.Layers, pod *Pod) rootfs.Layers {
	if m := pod.Namespaces.UserMapping; m != nil {
		l.IDMap = &rootfs.IDMap{UserNS: pod.Namespaces.User, UID: m.RootUID(), GID: m.RootGID()}
	}
	return l
}

// removeDirs removes a container's state dir, its rootfs unmounted first:
// removing through a live mount would delete the container's files.
func removeDirs(stateDir string) error {
	if err := rootfs.Unmount(filepath.Join(stateDir, rootfsDir)); err != nil {
		return err
	}
	if err := unmountVolumes(stateDir); err != nil {
		return err
	}
	return os.RemoveAll(stateDir)
}

// imageRef is the digest reference the image was pulled by, or its ID.
func imageRef(img *Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

func mountsOf(ms []*runtimeapi.Mount) []Mount {
	var out []Mount
	for _, m := range ms {
		out = append(out, Mount{
			ContainerPath:  m.GetContainerPath(),
			HostPath:       m.GetHostPath(),
			Readonly:       m.GetReadonly(),
			RecursiveRO:    m.GetRecursiveReadOnly(),
			SELinuxRelabel: m.GetSelinuxRelabel(),
			Propagation:    int32(m.GetPropagation()),
			Image:          m.GetImage().GetImage(),
			ImageSubPath:   m.GetImageSubPath(),
		})
	}
	return out
}

func resourcesOf(r *runtimeapi.LinuxContainerResources) *Resources {
	if r == nil {
		return nil
	}
	return &Resources{
		CPUPeriod:       r.GetCpuPeriod(),
		CPUQuota:        r.GetCpuQuota(),
		CPUShares:       r.GetCpuShares(),
		MemoryLimit:     r.GetMemoryLimitInBytes(),
		OOMScoreAdj:     r.GetOomScoreAdj(),
		CpusetCpus:      r.GetCpusetCpus(),
		CpusetMems:      r.GetCpusetMems(),
		MemorySwapLimit: r.GetMemorySwapLimitInBytes(),
		Unified:         cloneMap(r.GetUnified()),
	}
}

// boundCaps drops from the spec the capabilities berthd's own bounding set
// lacks (a privileged container asks for all the kernel knows): the
// container could not get them, and asking makes its start fail.
func boundCaps(s *specs.Spec) error {
	if s.Process == nil || s.Process.Capabilities == nil {
		return nil
	}
	bounding, err := boundingSet()
	if err != nil {
		return err
	}
	keep := func(list []string) []string {
		out := list[:0]
		for _, c := range list {
			if bounding[c] {
				out = append(out, c)
			}
		}
		return out
	}
	pc := s.Process.Capabilities
	pc.Bounding, pc.Effective, pc.Permitted = keep(pc.Bounding), keep(pc.Effective), keep(pc.Permitted)
	pc.Inheritable, pc.Ambient = keep(pc.Inheritable), keep(pc.Ambient)
	return nil
}

// boundingSet reads the names ("CAP_CHOWN") of this process's bounding set.
func boundingSet() (map[string]bool, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapBnd %q: %w", v, err)
		}
		out := map[string]bool{}
		for _, c := range capability.ListKnown() {
			if mask&(1<<uint(c)) != 0 {
				out["CAP_"+strings.ToUpper(c.String())] = true
			}
		}
		return out, nil
	}
	return nil, errors.New("no CapBnd in /proc/self/status")
}

// stepTimer notes how long each step of an operation took, for the logs.
type stepTimer struct {
	last  time.Time
	steps []string
}

func newStepTimer() *stepTimer { return &stepTimer{last: time.Now()} }

func (t *stepTimer) mark(step string) {
	now := time.Now()
	t.steps = append(t.steps, step+"="+now.Sub(t.last).Round(10*time.Microsecond).String())
	t.last = now
}

func (t *stepTimer) String() string { return strings.Join(t.steps, " ") }
