package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/runtime/shim"
)

// runTimeout bounds one pod's creation, which goes on after the caller's
// deadline (the kubelet retries and gets the pod).
const runTimeout = 4 * time.Minute

// Run creates and starts a pod and returns its id. The work is detached from
// ctx: when ctx ends first the pod is still made, and a retry with the same
// metadata (the kubelet's, after its deadline) gets it instead of
// AlreadyExists. Any failure undoes every step already done.
func (m *Manager) Run(ctx context.Context, cfg Config) (string, error) {
	if err := validate(&cfg); err != nil {
		return "", err
	}
	if err := m.supported(&cfg); err != nil {
		return "", err
	}
	key := cfg.Metadata.key()
	claimable := func(id string) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.names[key] == id
	}
	return m.runs.Do(ctx, key, claimable, func(ctx context.Context) (string, error) {
		// Checked here, one Run of the key at a time, so that two runs of
		// one pod cannot both pass.
		m.mu.Lock()
		id, ok := m.names[key]
		m.mu.Unlock()
		if ok {
			return "", fmt.Errorf("pod sandbox %s/%s (uid %s, attempt %d) exists as %s: %w",
				cfg.Metadata.Namespace, cfg.Metadata.Name, cfg.Metadata.UID, cfg.Metadata.Attempt, id, errdefs.ErrAlreadyExists)
		}
		return m.run(ctx, cfg)
	})
}

func validate(cfg *Config) error {
	md := cfg.Metadata
	if md.Name == "" || md.Namespace == "" || md.UID == "" {
		return fmt.Errorf("pod metadata needs name, namespace and uid: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateSysctls(cfg); err != nil {
		return err
	}
	if len(cfg.Hostname) > 64 {
		return fmt.Errorf("hostname %q: %w: longer than 64 bytes", cfg.Hostname, errdefs.ErrInvalidArgument)
	}
	for _, pm := range cfg.PortMappings {
		switch pm.Protocol {
		case "tcp", "udp", "sctp":
		default:
			return fmt.Errorf("port mapping protocol %q: %w", pm.Protocol, errdefs.ErrInvalidArgument)
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return fmt.Errorf("port mapping %d→%d: %w: port out of range", pm.HostPort, pm.ContainerPort, errdefs.ErrInvalidArgument)
		}
	}
	if _, err := cni.BandwidthFromAnnotations(cfg.Annotations); err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	if cfg.SharedPID && cfg.HostPID {
		return fmt.Errorf("pod PID namespace: %w: both shared and host", errdefs.ErrInvalidArgument)
	}
	if cfg.UserNS != nil {
		if err := cfg.UserNS.Validate(); err != nil {
			return err
		}
		// Namespaces of the node are owned by the node's user namespace:
		// a pod's root could not use them, and Kubernetes forbids it.
		if cfg.HostNetwork || cfg.HostIPC || cfg.HostPID {
			return fmt.Errorf("%w: a pod with its own user namespace cannot use the node's network, IPC or PID namespace", errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// supported refuses what is valid but this node cannot do.
func (m *Manager) supported(cfg *Config) error {
	if cfg.UserNS != nil && m.opts.UserNamespaces != nil {
		return fmt.Errorf("%w: user namespaces are not available on this node: %w", errdefs.ErrFailedPrecondition, m.opts.UserNamespaces)
	}
	return nil
}

// podRun is one RunPodSandbox under way: the pod as made so far, and the
// undo of every step done, run in reverse when a later step fails.
type podRun struct {
	m        *Manager
	cfg      Config
	sb       *Sandbox
	hostname string
	pinDir   string
	pins     map[string]string
	pausePid int // of a shared-PID pod, as the shim reported it
	undo     []func()
	start    time.Time
	timings  []any // step timings, logged at -v=4
}

// run makes the pod, one named step after another; every step pushes its
// undo.
func (m *Manager) run(ctx context.Context, cfg Config) (_ string, err error) {
	r, err := m.newPodRun(cfg)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			r.unwind(err)
		}
	}()
	for _, step := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"hostname", r.chooseHostname},
		{"pod dir", r.makePodDir},
		{"namespaces", r.createNamespaces},
		{"shm", r.mountShm},
		{"network+shim", r.startNetworkAndShim},
		{"pause", r.pinPausePID},
		{"pod files", r.writePodFiles},
		{"extensions", r.tellRun},
		{"recorded", r.record},
	} {
		if err := step.do(ctx); err != nil {
			return "", err
		}
		r.mark(step.name)
	}
	klog.V(2).InfoS("Pod sandbox ready", "pod", r.sb.ID, "name", cfg.Metadata.Name, "ips", r.sb.IPs, "duration", time.Since(r.start))
	klog.V(4).InfoS("Pod sandbox steps", append([]any{"pod", r.sb.ID}, r.timings...)...)
	return r.sb.ID, nil
}

func (m *Manager) newPodRun(cfg Config) (*podRun, error) {
	id := newID()
	podCgroup, err := m.opts.Cgroups.PodCgroup(cfg.CgroupParent, id)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %s: %w: %w", cfg.Metadata.Name, errdefs.ErrInvalidArgument, err)
	}
	return &podRun{
		m:   m,
		cfg: cfg,
		sb: &Sandbox{
			ID:        id,
			Config:    cfg,
			CreatedAt: time.Now().UTC(),
			StateDir:  filepath.Join(m.podsDir, id),
			Cgroup:    podCgroup,
		},
		pinDir: filepath.Join(m.nsDir, id),
		start:  time.Now(),
	}, nil
}

func (r *podRun) fail(step string, err error) error {
	return fmt.Errorf("run pod sandbox %s: %s: %w", r.cfg.Metadata.Name, step, err)
}

func (r *podRun) unwind(err error) {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	klog.V(2).InfoS("RunPodSandbox failed and was undone", "pod", r.sb.ID, "err", err)
}

func (r *podRun) mark(step string) {
	r.timings = append(r.timings, step, time.Since(r.start).Round(10*time.Microsecond).String())
}

// chooseHostname: the node's for a host-network pod, else the request's
// or the pod's name.
func (r *podRun) chooseHostname(context.Context) error {
	r.hostname = r.cfg.Hostname
	if r.cfg.HostNetwork {
		h, err := os.Hostname()
		if err != nil {
			return r.fail("node hostname", err)
		}
		r.hostname = h
	} else if r.hostname == "" {
		r.hostname = r.cfg.Metadata.Name
		if len(r.hostname) > 63 {
			r.hostname = r.hostname[:63]
		}
	}
	return nil
}

// makePodDir makes the pod dir and its pod.json first: a crash from here
// on is repaired at the next start.
func (r *podRun) makePodDir(context.Context) error {
	sb := r.sb
	if err := os.MkdirAll(sb.StateDir, 0o711); err != nil {
		return r.fail("make pod dir", errdefs.NoSpace(err, r.m.podsDir))
	}
	r.undo = append(r.undo, func() { _ = os.RemoveAll(sb.StateDir) })
	pf, _ := json.Marshal(podFile{ID: sb.ID, Cgroup: sb.Cgroup})
	if err := writeFileAtomic(filepath.Join(sb.StateDir, "pod.json"), pf, 0o600); err != nil {
		return r.fail("write pod.json", errdefs.NoSpace(err, r.m.podsDir))
	}
	return nil
}

// createNamespaces creates the pod's namespaces and pins them.
func (r *podRun) createNamespaces(context.Context) error {
	cfg, sb := r.cfg, r.sb
	pins, err := createNamespaces(r.pinDir, nsSpec{
		net: !cfg.HostNetwork, ipc: !cfg.HostIPC, uts: !cfg.HostNetwork,
		hostname: r.hostname, sysctls: cfg.Sysctls,
		userns: cfg.UserNS, holdBinary: r.m.opts.ShimBinary,
	})
	if err != nil {
		_ = os.RemoveAll(r.pinDir)
		return r.fail("create namespaces", err)
	}
	r.pins = pins
	// r.pins, not pins: the PID namespace is pinned into it later.
	r.undo = append(r.undo, func() { _ = unpin(r.pins); _ = os.RemoveAll(r.pinDir) })
	sb.UserNS, sb.NetNS, sb.IPCNS, sb.UTSNS = pins["user"], pins["net"], pins["ipc"], pins["uts"]
	return nil
}

// mountShm gives a pod with its own IPC namespace its own /dev/shm.
func (r *podRun) mountShm(context.Context) error {
	sb := r.sb
	sb.ShmPath = "/dev/shm"
	if r.cfg.HostIPC {
		return nil
	}
	sb.ShmPath = filepath.Join(sb.StateDir, "shm")
	if err := mountShm(sb.ShmPath); err != nil {
		return r.fail("mount /dev/shm", err)
	}
	r.undo = append(r.undo, func() { _ = unmountRemove(sb.ShmPath) })
	return nil
}

// launched is what the cgroup and shim step reports.
type launched struct {
	l      *shim.Launched
	cgErr  error
	err    error
	doneAt time.Duration
}

// startNetworkAndShim makes the pod cgroup and starts the shim while CNI
// sets up the network: neither needs the other. Whatever of the three
// succeeded is undone when any failed.
func (r *podRun) startNetworkAndShim(ctx context.Context) error {
	shimCh := make(chan launched, 1)
	go func() { shimCh <- r.launchShim(ctx) }()
	netErr := r.setupNetwork(ctx)
	r.mark("network")
	sr := <-shimCh
	r.timings = append(r.timings, "cgroup+shim", sr.doneAt.Round(10*time.Microsecond).String())
	sb, m := r.sb, r.m
	if sr.cgErr == nil {
		r.undo = append(r.undo, func() {
			if err := m.opts.Cgroups.DeletePod(sb.Cgroup); err != nil {
				klog.ErrorS(err, "Undoing pod cgroup", "pod", sb.ID)
			}
		})
	}
	if sr.err == nil && sr.cgErr == nil {
		sb.ShimPid, sb.ShimStartTime = sr.l.Pid, sr.l.StartTime
		r.pausePid = sr.l.PausePid
		r.undo = append(r.undo, func() { m.stopShim(sb) })
	}
	switch {
	case netErr != nil:
		return r.fail("network", netErr)
	case sr.cgErr != nil:
		return r.fail("pod cgroup", sr.cgErr)
	case sr.err != nil:
		return r.fail("start shim", errdefs.NoSpace(sr.err, m.podsDir))
	}
	return nil
}

// launchShim creates the pod cgroup and starts the shim in it.
func (r *podRun) launchShim(ctx context.Context) (res launched) {
	defer func() { res.doneAt = time.Since(r.start) }()
	cfg, sb := r.cfg, r.sb
	place, err := r.m.opts.Cgroups.CreatePod(sb.Cgroup, linuxResources(cfg.Resources, cfg.Overhead))
	if err != nil {
		res.cgErr = err
		return res
	}
	opts := shim.LaunchOptions{
		Binary: r.m.opts.ShimBinary, PodID: sb.ID, StateDir: sb.StateDir,
		LogPath: filepath.Join(sb.StateDir, "shim.log"),
		Place:   place,
		Env:     r.m.opts.ShimEnv,
	}
	if cfg.SharedPID {
		opts.Pause = &shim.PauseOptions{UserNS: sb.UserNS, NetNS: sb.NetNS, IPCNS: sb.IPCNS, UTSNS: sb.UTSNS}
	}
	res.l, res.err = shim.Launch(ctx, opts)
	return res
}

// setupNetwork attaches the pod's network namespace through CNI.
func (r *podRun) setupNetwork(ctx context.Context) error {
	cfg, sb, m := r.cfg, r.sb, r.m
	if cfg.HostNetwork || m.opts.Network == nil {
		return nil
	}
	var podCIDR string
	if m.opts.PodCIDR != nil {
		podCIDR = m.opts.PodCIDR()
	}
	bw, _ := cni.BandwidthFromAnnotations(cfg.Annotations) // validated
	if len(cfg.PortMappings) > 0 {
		// A hostPort of a stopped pod not yet released would still lead
		// to that pod (the kubelet recreating a pod's sandbox asks for the
		// same ports at once).
		if err := m.waitPortReleases(ctx); err != nil {
			return err
		}
	}
	pod := cni.Pod{
		ID: sb.ID, Name: cfg.Metadata.Name, Namespace: cfg.Metadata.Namespace, UID: cfg.Metadata.UID,
		NetNS: sb.NetNS, PortMappings: cfg.PortMappings, PodCIDR: podCIDR, Bandwidth: bw,
	}
	// A failed ADD cleaned up after itself (cni.Network.Setup), so it may
	// be tried again: an IP range may be short only of the addresses that
	// stopped pods still hold until their release.
	var att *cni.Attachment
	err := m.afterReleases(ctx, "pod network "+sb.ID, func() (err error) {
		att, err = m.opts.Network.Setup(ctx, pod)
		return err
	})
	if err != nil {
		return err
	}
	sb.Network, sb.IPs, sb.NetworkAttached = att.Network, att.IPs, true
	r.undo = append(r.undo, func() { m.teardown(sb) })
	return nil
}

// pinPausePID pins the PID namespace of a shared-PID pod's pause process.
func (r *podRun) pinPausePID(context.Context) error {
	sb := r.sb
	if r.pausePid == 0 {
		return nil
	}
	sb.PausePid = r.pausePid
	var err error
	if sb.PauseStartTime, err = shim.StartTime(sb.PausePid); err != nil {
		return r.fail("pause process", err)
	}
	sb.PIDNS = filepath.Join(r.pinDir, "pid")
	if err := pin(fmt.Sprintf("/proc/%d/ns/pid", sb.PausePid), sb.PIDNS); err != nil {
		return r.fail("pin PID namespace", err)
	}
	r.pins["pid"] = sb.PIDNS
	return nil
}

// writePodFiles writes hostname, hosts and resolv.conf for the containers.
func (r *podRun) writePodFiles(context.Context) error {
	if err := writePodFiles(r.sb.StateDir, r.hostname, r.sb.IPs, r.cfg.DNS); err != nil {
		return r.fail("pod files", errdefs.NoSpace(err, r.m.podsDir))
	}
	return nil
}

// record commits the pod, makes it known by id and name, and announces it.
func (r *podRun) record(context.Context) error {
	sb, m := r.sb, r.m
	sb.State = StateReady
	if err := m.store.put(sb); err != nil {
		return r.fail("record", err)
	}
	m.mu.Lock()
	m.pods[sb.ID] = sb
	m.names[r.cfg.Metadata.key()] = sb.ID
	m.mu.Unlock()
	m.publish(sb, events.Created, events.Started)
	return nil
}

// teardown releases the pod's network (CNI DEL with the cached result), on a
// context of its own: it must run even when the caller went away.
func (m *Manager) teardown(sb *Sandbox) error {
	if m.opts.Network == nil || !sb.NetworkAttached {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := m.opts.Network.Teardown(ctx, cni.Pod{
		ID: sb.ID, Name: sb.Config.Metadata.Name, Namespace: sb.Config.Metadata.Namespace, UID: sb.Config.Metadata.UID,
		NetNS: sb.NetNS, PortMappings: sb.Config.PortMappings,
	})
	if err != nil {
		return err
	}
	sb.NetworkAttached = false
	return nil
}

// stopShim asks the shim to shut down (which ends the pause process) and
// kills what is left.
func (m *Manager) stopShim(sb *Sandbox) {
	if sb.ShimPid != 0 && shim.Alive(sb.ShimPid, sb.ShimStartTime) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := shim.Connect(sb.StateDir).Shutdown(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			klog.V(2).InfoS("Shim shutdown failed, killing it", "pod", sb.ID, "err", err)
		}
		if !shim.WaitGone(sb.ShimPid, sb.ShimStartTime, 2*time.Second) {
			killPid(sb.ShimPid, sb.ShimStartTime)
		}
	}
	if sb.PausePid != 0 && shim.Alive(sb.PausePid, sb.PauseStartTime) {
		killPid(sb.PausePid, sb.PauseStartTime)
	}
}
