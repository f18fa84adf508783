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

// run makes the pod; every step pushes its undo.
func (m *Manager) run(ctx context.Context, cfg Config) (_ string, err error) {
	start := time.Now()
	id := newID()
	podCgroup, err := m.opts.Cgroups.PodCgroup(cfg.CgroupParent, id)
	if err != nil {
		return "", fmt.Errorf("run pod sandbox %s: %w: %w", cfg.Metadata.Name, errdefs.ErrInvalidArgument, err)
	}
	sb := &Sandbox{
		ID:        id,
		Config:    cfg,
		CreatedAt: time.Now().UTC(),
		StateDir:  filepath.Join(m.podsDir, id),
		Cgroup:    podCgroup,
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			klog.V(2).InfoS("RunPodSandbox failed and was undone", "pod", id, "err", err)
		}
	}()
	step := func(name string, e error) error {
		return fmt.Errorf("run pod sandbox %s: %s: %w", cfg.Metadata.Name, name, e)
	}
	// Step timings, logged at -v=4.
	var timings []any
	mark := func(name string) {
		timings = append(timings, name, time.Since(start).Round(10*time.Microsecond).String())
	}

	hostname := cfg.Hostname
	if cfg.HostNetwork {
		if hostname, err = os.Hostname(); err != nil {
			return "", step("node hostname", err)
		}
	} else if hostname == "" {
		hostname = cfg.Metadata.Name
		if len(hostname) > 63 {
			hostname = hostname[:63]
		}
	}

	// The pod dir and its pod.json first: a crash from here on is repaired
	// at the next start.
	if err := os.MkdirAll(sb.StateDir, 0o711); err != nil {
		return "", step("make pod dir", errdefs.NoSpace(err, m.podsDir))
	}
	undo = append(undo, func() { _ = os.RemoveAll(sb.StateDir) })
	pf, _ := json.Marshal(podFile{ID: id, Cgroup: sb.Cgroup})
	if err := writeFileAtomic(filepath.Join(sb.StateDir, "pod.json"), pf, 0o600); err != nil {
		return "", step("write pod.json", errdefs.NoSpace(err, m.podsDir))
	}

	pinDir := filepath.Join(m.nsDir, id)
	pins, err := createNamespaces(pinDir, nsSpec{
		net: !cfg.HostNetwork, ipc: !cfg.HostIPC, uts: !cfg.HostNetwork,
		hostname: hostname, sysctls: cfg.Sysctls,
		userns: cfg.UserNS, holdBinary: m.opts.ShimBinary,
	})
	if err != nil {
		_ = os.RemoveAll(pinDir)
		return "", step("create namespaces", err)
	}
	undo = append(undo, func() { _ = unpin(pins); _ = os.RemoveAll(pinDir) })
	mark("namespaces")
	sb.UserNS, sb.NetNS, sb.IPCNS, sb.UTSNS = pins["user"], pins["net"], pins["ipc"], pins["uts"]

	sb.ShmPath = "/dev/shm"
	if !cfg.HostIPC {
		sb.ShmPath = filepath.Join(sb.StateDir, "shm")
		if err := mountShm(sb.ShmPath); err != nil {
			return "", step("mount /dev/shm", err)
		}
		undo = append(undo, func() { _ = unmountRemove(sb.ShmPath) })
	}

	// The cgroup and the shim are made while CNI works: neither needs the
	// other.
	type launched struct {
		place  func(pid int) error
		l      *shim.Launched
		cgErr  error
		err    error
		doneAt time.Duration
	}
	shimCh := make(chan launched, 1)
	go func() {
		var r launched
		defer func() { r.doneAt = time.Since(start); shimCh <- r }()
		if r.place, r.cgErr = m.opts.Cgroups.CreatePod(sb.Cgroup, linuxResources(cfg.Resources, cfg.Overhead)); r.cgErr != nil {
			return
		}
		opts := shim.LaunchOptions{
			Binary: m.opts.ShimBinary, PodID: id, StateDir: sb.StateDir,
			LogPath: filepath.Join(sb.StateDir, "shim.log"),
			Place:   r.place,
		}
		if cfg.SharedPID {
			opts.Pause = &shim.PauseOptions{UserNS: sb.UserNS, NetNS: sb.NetNS, IPCNS: sb.IPCNS, UTSNS: sb.UTSNS}
		}
		r.l, r.err = shim.Launch(ctx, opts)
	}()
	var netErr error
	if !cfg.HostNetwork && m.opts.Network != nil {
		var podCIDR string
		if m.opts.PodCIDR != nil {
			podCIDR = m.opts.PodCIDR()
		}
		bw, _ := cni.BandwidthFromAnnotations(cfg.Annotations) // validated
		att, err := m.opts.Network.Setup(ctx, cni.Pod{
			ID: id, Name: cfg.Metadata.Name, Namespace: cfg.Metadata.Namespace, UID: cfg.Metadata.UID,
			NetNS: sb.NetNS, PortMappings: cfg.PortMappings, PodCIDR: podCIDR, Bandwidth: bw,
		})
		if err != nil {
			netErr = err
		} else {
			sb.Network, sb.IPs, sb.NetworkAttached = att.Network, att.IPs, true
			undo = append(undo, func() { m.teardown(sb) })
		}
	}
	mark("network")
	sr := <-shimCh
	timings = append(timings, "cgroup+shim", sr.doneAt.Round(10*time.Microsecond).String())
	if sr.cgErr == nil {
		undo = append(undo, func() {
			if err := m.opts.Cgroups.DeletePod(sb.Cgroup); err != nil {
				klog.ErrorS(err, "Undoing pod cgroup", "pod", id)
			}
		})
	}
	if sr.err == nil && sr.cgErr == nil {
		sb.ShimPid, sb.ShimStartTime = sr.l.Pid, sr.l.StartTime
		undo = append(undo, func() { m.stopShim(sb) })
	}
	if netErr != nil {
		return "", step("network", netErr)
	}
	if sr.cgErr != nil {
		return "", step("pod cgroup", sr.cgErr)
	}
	if sr.err != nil {
		return "", step("start shim", errdefs.NoSpace(sr.err, m.podsDir))
	}
	if sr.l.PausePid != 0 {
		sb.PausePid = sr.l.PausePid
		if sb.PauseStartTime, err = shim.StartTime(sb.PausePid); err != nil {
			return "", step("pause process", err)
		}
		sb.PIDNS = filepath.Join(pinDir, "pid")
		if err := pin(fmt.Sprintf("/proc/%d/ns/pid", sb.PausePid), sb.PIDNS); err != nil {
			return "", step("pin PID namespace", err)
		}
		pins["pid"] = sb.PIDNS
	}

	if err := writePodFiles(sb.StateDir, hostname, sb.IPs, cfg.DNS); err != nil {
		return "", step("pod files", errdefs.NoSpace(err, m.podsDir))
	}

	sb.State = StateReady
	if err := m.store.put(sb); err != nil {
		return "", step("record", err)
	}
	m.mu.Lock()
	m.pods[id] = sb
	m.names[cfg.Metadata.key()] = id
	m.mu.Unlock()
	m.publish(sb, events.Created, events.Started)
	mark("recorded")
	klog.V(2).InfoS("Pod sandbox ready", "pod", id, "name", cfg.Metadata.Name, "ips", sb.IPs, "duration", time.Since(start))
	klog.V(4).InfoS("Pod sandbox steps", append([]any{"pod", id}, timings...)...)
	return id, nil
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
