package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/collector"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/runtime/inflight"
	"github.com/berth-dev/berth/runtime/shim"
)

// Options configure a Manager.
type Options struct {
	DB *bolt.DB
	// StateDir is berthd's volatile state dir (ns/ and pods/ go there).
	StateDir string
	// ShimBinary is the berth-shim executable.
	ShimBinary string
	// ShimEnv is added to each shim's environment.
	ShimEnv []string
	// Network attaches pods to the CNI network.
	Network *cni.Network
	// PodCIDR returns the node's pod CIDR (UpdateRuntimeConfig), or "".
	PodCIDR func() string
	// Events receives the pods' lifecycle events (nil: none; events.go).
	Events *events.Bus
	// UserNamespaces is why pods cannot have user namespaces on this node
	// (see userns.Supported); nil: they can.
	UserNamespaces error
	// Cgroups is the cgroup driver of the pods (nil: cgroupfs).
	Cgroups cgroups.Manager
	// HoldNetRelease keeps stopped pods' networks from being released: a
	// test's stand-in for a crash right after a stop returned (berthd's
	// hidden --test-hooks).
	HoldNetRelease bool
	// StatsCollectPeriod: how often the pods' usage is read in the
	// background while the stats lists are called (0: in each call).
	StatsCollectPeriod time.Duration
}

// Hooks let the containers side take part in a pod's lifecycle.
type Hooks struct {
	// StopContainers stops every container of the pod (StopPodSandbox).
	StopContainers func(ctx context.Context, podID string) error
	// RemoveContainers removes every container of the pod (RemovePodSandbox).
	RemoveContainers func(ctx context.Context, podID string) error
}

// Manager runs the node's pods.
type Manager struct {
	opts    Options
	store   store
	nsDir   string
	podsDir string

	mu    sync.Mutex
	pods  map[string]*Sandbox
	names map[string]string // Metadata.key → id
	// runs are the RunPodSandbox calls still working, and the pods whose
	// callers gave up before they were ready, kept for their retry.
	runs     *inflight.Group
	podLocks map[string]*sync.Mutex
	// ext are the runtime extensions' hooks (extensions.go).
	ext   Extensions
	hooks Hooks
	// rel are the network releases running after their pods' stop.
	rel *releases
	// live is what List knows of the ready pods' processes (liveness.go).
	live *liveness
	// collect keeps the pods' usage for the stats lists (statscollect.go).
	collect *collector.Collector[*Sandbox, *Stats]
}

// New opens the pod records, makes the pin dir a private mount and repairs
// what a crash or a reboot left: pods whose namespaces are gone are marked
// not ready with their network released, and leftovers of unrecorded pods
// (half-made by a crash) are removed.
func New(opts Options) (*Manager, error) {
	if opts.Cgroups == nil {
		opts.Cgroups = cgroupfsDriver{}
	}
	m := &Manager{
		opts:     opts,
		store:    store{opts.DB},
		nsDir:    filepath.Join(opts.StateDir, "ns"),
		podsDir:  filepath.Join(opts.StateDir, "pods"),
		pods:     map[string]*Sandbox{},
		names:    map[string]string{},
		podLocks: map[string]*sync.Mutex{},
		runs:     inflight.New("RunPodSandbox", runTimeout),
		rel:      newReleases(opts.HoldNetRelease),
		live:     newLiveness(),
	}
	if err := m.store.init(); err != nil {
		return nil, fmt.Errorf("pod records: %w", err)
	}
	if err := os.MkdirAll(m.podsDir, 0o711); err != nil {
		return nil, err
	}
	if err := makePrivateMount(m.nsDir); err != nil {
		return nil, fmt.Errorf("pin dir: %w", err)
	}
	all, err := m.store.all()
	if err != nil {
		return nil, err
	}
	for _, sb := range all {
		m.pods[sb.ID] = sb
		m.names[sb.Config.Metadata.key()] = sb.ID
	}
	m.recover(context.Background())
	go m.checkLive()
	m.collect = newStatsCollector(m)
	return m, nil
}

// SetHooks installs the containers side's hooks.
func (m *Manager) SetHooks(h Hooks) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hooks = h
}

// Close waits a while for the network releases still running, then
// releases the pin dir's own mount when no pod pins remain in it.
func (m *Manager) Close() error {
	m.live.once.Do(func() { close(m.live.done) })
	m.collect.Close()
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait)
	m.waitReleases(ctx)
	cancel()
	mps, err := mountsUnder(m.nsDir)
	if err != nil {
		return err
	}
	if len(mps) == 1 && mps[0] == m.nsDir {
		return unmountRemove(m.nsDir)
	}
	return nil
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *Manager) podLock(id string) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.podLocks[id]
	if !ok {
		l = &sync.Mutex{}
		m.podLocks[id] = l
	}
	return l
}

// lookup finds a pod by id or unique id prefix.
func (m *Manager) lookup(id string) (*Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lookupLocked(id)
}

func (m *Manager) lookupLocked(id string) (*Sandbox, error) {
	if id == "" {
		return nil, fmt.Errorf("pod sandbox id: %w: empty", errdefs.ErrInvalidArgument)
	}
	if sb, ok := m.pods[id]; ok {
		return sb, nil
	}
	var found *Sandbox
	for pid, sb := range m.pods {
		if strings.HasPrefix(pid, id) {
			if found != nil {
				return nil, fmt.Errorf("pod sandbox id %q: %w: ambiguous prefix", id, errdefs.ErrInvalidArgument)
			}
			found = sb
		}
	}
	if found == nil {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return found, nil
}

// Get returns a copy of a pod's record.
func (m *Manager) Get(id string) (*Sandbox, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	c := *sb
	return &c, nil
}

// Status returns a pod's record and whether it is live.
func (m *Manager) Status(id string) (*Status, error) {
	sb, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	return liveStatus(sb), nil
}

func liveStatus(sb *Sandbox) *Status {
	st := &Status{Sandbox: sb}
	if sb.State != StateReady {
		return st
	}
	switch {
	case !shim.Alive(sb.ShimPid, sb.ShimStartTime):
		st.Reason = "shim is gone"
	case sb.PausePid != 0 && !shim.Alive(sb.PausePid, sb.PauseStartTime):
		st.Reason = "pause process is gone"
	case sb.NetNS != "" && !isNamespacePin(sb.NetNS):
		st.Reason = "network namespace is gone"
	default:
		st.Ready = true
	}
	return st
}

// List returns the pods the filter selects, oldest first.
func (m *Manager) List(f Filter) []*Status {
	m.mu.Lock()
	type pair struct{ sb, c *Sandbox }
	var sbs []pair
	for id, sb := range m.pods {
		if f.ID != "" && !strings.HasPrefix(id, f.ID) {
			continue
		}
		if !labelsMatch(sb.Config.Labels, f.LabelSelector) {
			continue
		}
		c := *sb
		sbs = append(sbs, pair{sb, &c})
	}
	m.mu.Unlock()
	sort.Slice(sbs, func(i, j int) bool { return sbs[i].c.CreatedAt.Before(sbs[j].c.CreatedAt) })
	out := make([]*Status, 0, len(sbs))
	for _, p := range sbs {
		st := m.cachedStatus(p.sb, p.c)
		if f.State != nil && (*f.State == StateReady) != st.Ready {
			continue
		}
		out = append(out, st)
	}
	return out
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// podFile is written first into a new pod's dir: enough to clean up after
// a crash before the record was written.
type podFile struct {
	ID     string `json:"id"`
	Cgroup string `json:"cgroup"`
}

// recover repairs the state at start-up (see New).
func (m *Manager) recover(ctx context.Context) {
	m.mu.Lock()
	known := map[string]*Sandbox{}
	for id, sb := range m.pods {
		known[id] = sb
	}
	m.mu.Unlock()

	for _, sb := range known {
		if sb.State == StateReady && sb.NetNS != "" && !isNamespacePin(sb.NetNS) {
			klog.InfoS("Pod lost its namespaces (reboot?), releasing it", "pod", sb.ID)
			if err := m.stop(ctx, sb); err != nil {
				klog.ErrorS(err, "Releasing pod", "pod", sb.ID)
			}
		} else if sb.State != StateReady && sb.NetworkAttached && m.opts.Network != nil {
			// Stopped, and berthd ended before its network was released.
			klog.InfoS("Releasing the network of a stopped pod", "pod", sb.ID)
			m.releaseLater(*sb)
		}
	}
	// Shims of pods we have no record of (a crash before the record, or a
	// state dir wiped under running pods): their sockets may be gone, so
	// they are found by their command line.
	for pid, id := range m.shimProcesses() {
		if _, ok := known[id]; !ok {
			klog.InfoS("Stopping the shim of an unrecorded pod", "pod", id, "pid", pid)
			killOrphanShim(pid)
		}
	}
	// Pod dirs and pins a crash left without a record.
	for _, dir := range []string{m.podsDir, m.nsDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if _, ok := known[e.Name()]; ok || !e.IsDir() {
				continue
			}
			klog.InfoS("Removing leftovers of an unrecorded pod", "pod", e.Name())
			m.cleanOrphan(ctx, e.Name())
		}
	}
	if m.opts.Network == nil {
		return
	}
	cached, err := m.opts.Network.CachedPods()
	if err != nil {
		klog.ErrorS(err, "Reading the CNI cache")
	}
	for _, id := range cached {
		if _, ok := known[id]; !ok {
			klog.InfoS("Releasing the network of an unknown pod", "pod", id)
			if err := m.opts.Network.Teardown(ctx, cni.Pod{ID: id}); err != nil {
				klog.ErrorS(err, "CNI DEL of an unknown pod", "pod", id)
			}
		}
	}
	valid := make([]string, 0, len(known))
	for id, sb := range known {
		if sb.NetworkAttached {
			valid = append(valid, id)
		}
	}
	if err := m.opts.Network.GC(ctx, valid); err != nil {
		klog.ErrorS(err, "CNI GC")
	}
}

// cleanOrphan removes what an unrecorded pod left: its shim, pins, shm,
// network and cgroup.
func (m *Manager) cleanOrphan(ctx context.Context, id string) {
	podDir := filepath.Join(m.podsDir, id)
	var pf podFile
	if b, err := os.ReadFile(filepath.Join(podDir, "pod.json")); err == nil {
		_ = json.Unmarshal(b, &pf)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if st, err := shim.Connect(podDir).Status(sctx); err == nil {
		_ = shim.Connect(podDir).Shutdown(sctx)
		shim.WaitGone(st.Pid, 0, 5*time.Second)
	}
	cancel()
	if m.opts.Network != nil {
		_ = m.opts.Network.Teardown(ctx, cni.Pod{ID: id, NetNS: filepath.Join(m.nsDir, id, "net")})
	}
	if err := m.unmountAll(id); err != nil {
		klog.ErrorS(err, "Unmounting leftovers", "pod", id)
	}
	if pf.Cgroup != "" {
		if err := m.opts.Cgroups.DeletePod(pf.Cgroup); err != nil {
			klog.ErrorS(err, "Deleting a leftover cgroup", "pod", id)
		}
	}
	_ = os.RemoveAll(podDir)
	_ = os.RemoveAll(filepath.Join(m.nsDir, id))
}

// unmountAll unmounts every mount under the pod's pin and pod dirs.
func (m *Manager) unmountAll(id string) error {
	return m.unmountBelow(filepath.Join(m.nsDir, id), filepath.Join(m.podsDir, id))
}

// unmountPodDir unmounts what is mounted in the pod's dir (its /dev/shm),
// leaving its namespace pins.
func (m *Manager) unmountPodDir(id string) error {
	return m.unmountBelow(filepath.Join(m.podsDir, id))
}

func (m *Manager) unmountBelow(dirs ...string) error {
	var errs []error
	for _, dir := range dirs {
		mps, err := mountRoots(dir)
		if err != nil {
			return err
		}
		for i := len(mps) - 1; i >= 0; i-- {
			if err := unmountRemove(mps[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// shimProcesses maps the pids of the shims serving pods of this state dir
// ("berth-shim serve ... --id ID --state-dir <podsDir>/ID") to their pod ids.
func (m *Manager) shimProcesses() map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		// An idle shim runs as berth-mon, and a shim berth-mon handed
		// an op back to as "resume" (cmd/berth-shim/demote.go).
		if len(args) < 2 || !isShimCmdline(filepath.Base(args[0]), args[1]) {
			continue
		}
		for i := 2; i+1 < len(args); i++ {
			if args[i] == "--state-dir" && filepath.Dir(args[i+1]) == m.podsDir {
				out[pid] = filepath.Base(args[i+1])
			}
		}
	}
	return out
}

// killOrphanShim kills a shim and its process group (its pause process),
// then removes the cgroup it was placed in, which is the pod's own.
func killOrphanShim(pid int) {
	start, err := shim.StartTime(pid)
	if err != nil {
		return
	}
	cg := podCgroupOf(pid)
	_ = unix.Kill(-pid, unix.SIGKILL)
	_ = unix.Kill(pid, unix.SIGKILL)
	shim.WaitGone(pid, start, 5*time.Second)
	if cg != "" {
		if err := deleteCgroup(cg); err != nil {
			klog.ErrorS(err, "Deleting the cgroup of an orphaned shim", "pid", pid)
		}
	}
}

// podCgroupOf is the pod cgroup (".../berth-<id>") a process is in, or "".
func podCgroupOf(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		// "ID:controllers:/path"; the pids or the v2 ("0::") line is enough.
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 || f[1] != "pids" && f[0] != "0" {
			continue
		}
		// The shim lives in its pod's cgroup or, on v2, in a leaf of it.
		p := f[2]
		if path.Base(p) == cgroups.ShimLeaf {
			p = path.Dir(p)
		}
		if strings.HasPrefix(path.Base(p), "berth-") {
			return p
		}
	}
	return ""
}

func isShimCmdline(name, role string) bool {
	return name == "berth-mon" || (name == "berth-shim" && (role == "serve" || role == "resume"))
}
