package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/cdi"
	"github.com/berth-dev/berth/runtime/collector"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/runtime/inflight"
	"github.com/berth-dev/berth/runtime/spec"
)

// Pod is what a container needs of its pod sandbox.
type Pod struct {
	ID    string
	Ready bool
	// StateDir holds the pod shim's control socket.
	StateDir string
	// Namespaces are the pod's pinned namespaces; Files its hostname,
	// hosts, resolv.conf and /dev/shm.
	Namespaces spec.Namespaces
	Files      spec.PodFiles
	// Cgroup is the pod's cgroupfs path; containers go below it.
	Cgroup       string
	LogDirectory string
	// Sysctls are the pod's, as RunPodSandbox checked and set them; a
	// CreateContainer request's sandbox_config may name others, never
	// checked, and is not used for them.
	Sysctls map[string]string
	// Privileged is the pod's, as RunPodSandbox got it: only a privileged
	// pod runs privileged containers, whatever a CreateContainer request's
	// sandbox_config claims. Nil (a pod recorded before berth kept it):
	// the request's.
	Privileged *bool
}

// Pods finds pod sandboxes by id (or unique id prefix). An unknown pod is
// an error wrapping errdefs.ErrNotFound.
type Pods interface {
	Pod(id string) (*Pod, error)
}

// Image is a resolved local image.
type Image struct {
	ID          string
	RepoTags    []string
	RepoDigests []string
	Config      imagespec.Image
	// LayerDirs are the unpacked layers, lowest first.
	LayerDirs []string
}

// Images resolves local images and keeps the layers of the images that
// containers use.
type Images interface {
	Resolve(ctx context.Context, ref string) (*Image, error)
	AddUser(imageID, user string) error
	// AddUserWith is AddUser that also runs with in its database
	// transaction (the container's record: one commit for both).
	AddUserWith(imageID, user string, with func(tx *bolt.Tx) error) error
	RemoveUser(user string) error
}

// Options configure a Manager.
type Options struct {
	DB *bolt.DB
	// Root is berthd's persistent root: writable layers go to Root/containers.
	Root string
	// State is berthd's volatile state dir: bundles, rootfs mount points and
	// exit records go to State/containers.
	State  string
	Pods   Pods
	Images Images
	// CgroupNamespace gives containers their own cgroup namespace (cgroup
	// v2 nodes).
	CgroupNamespace bool
	// SeccompDefault gives runtime/default to containers whose request names
	// no seccomp profile (berthd's seccomp_default).
	SeccompDefault bool
	// Events receives the containers' lifecycle events (nil: none).
	Events *events.Bus
	// CDI resolves the CDI devices containers ask for (nil: none known).
	CDI *cdi.Registry
	// HoldCleanup keeps the background cleanup of removed containers from
	// running: a test's stand-in for a crash just after a removal returned
	// (berthd's hidden --test-hooks). A pod removal still cleans its
	// containers up.
	HoldCleanup bool
	// StatsCollectPeriod: how often the containers' usage is read in the
	// background while the stats lists are called (0: in each call).
	StatsCollectPeriod time.Duration
}

// Manager creates and controls containers through their pod's shim.
type Manager struct {
	opts     Options
	store    *Store
	layerDir string
	stateDir string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// making are the containers whose record is stored but whose shim
	// create has not returned yet (create.go).
	making map[string]bool
	// creates are the creates still working, and the containers whose
	// creators gave up before they were made, kept for their retry.
	creates *inflight.Group
	// cpu keeps the previous CPU sample of each container, for nano cores.
	cpu map[string]cpuSample
	// collect keeps the containers' usage for the stats lists
	// (statscollect.go).
	collect *collector.Collector[*Record, *Stats]
	// adjust is the runtime extensions' spec hook (adjust.go).
	adjust AdjustFunc
	// exits tells of exit records as the shims write them (exitwatch.go).
	exits *exits
	// trash holds the cleanups of removed containers (trash.go).
	trash *trash
	// done stops the exit watcher (watch.go) and the trash's sweeper.
	done      chan struct{}
	closeOnce sync.Once
}

type cpuSample struct {
	at    time.Time
	usage uint64
}

// New opens the container records and reconciles them with what the shims
// and the exit records say: a container that ended while berthd was away
// gets its real exit.
func New(opts Options) (*Manager, error) {
	st, err := OpenStore(opts.DB)
	if err != nil {
		return nil, err
	}
	st.notify = publishTo(opts.Events)
	m := &Manager{
		opts:     opts,
		store:    st,
		layerDir: filepath.Join(opts.Root, "containers"),
		stateDir: filepath.Join(opts.State, "containers"),
		locks:    map[string]*sync.Mutex{},
		making:   map[string]bool{},
		creates:  inflight.New("CreateContainer", createTimeout),
		cpu:      map[string]cpuSample{},
		done:     make(chan struct{}),
		trash:    newTrash(opts.HoldCleanup),
	}
	m.collect = newStatsCollector(m)
	for _, d := range []string{m.layerDir, m.stateDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("container dirs: %w", err)
		}
	}
	if err := st.openTombstones(filepath.Join(opts.Root, tombstoneDir)); err != nil {
		return nil, err
	}
	trashed, err := st.loadTrash()
	if err != nil {
		return nil, err
	}
	for _, r := range trashed {
		m.throwAway(r, false)
	}
	m.exits = newExits(m)
	m.recover()
	go m.watch()
	go m.sweep()
	return m, nil
}

// LayersDir is where the containers' writable layers live.
func (m *Manager) LayersDir() string { return m.layerDir }

// recover refreshes every live record from its shim or exit record, and
// removes dirs that no record owns (a crash in the middle of a create).
func (m *Manager) recover() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	known := map[string]bool{}
	m.trash.mu.Lock()
	for id := range m.trash.items {
		known[id] = true // the sweeper's to clean up
	}
	m.trash.mu.Unlock()
	var live []*Record
	for _, r := range m.store.List(nil) {
		known[r.ID] = true
		if r.Status.State == Exited {
			continue
		}
		// Watched before the refresh, so that an exit after it is seen.
		m.exits.add(r.ID, r.StateDir)
		live = append(live, r)
	}
	m.refreshAtStart(ctx, live)
	for _, dir := range []string{m.stateDir, m.layerDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if known[e.Name()] {
				continue
			}
			p := filepath.Join(dir, e.Name())
			klog.InfoS("Removing leftover of an unrecorded container", "path", p)
			if err := removeDirs(p); err != nil {
				klog.ErrorS(err, "Remove leftover container dir", "path", p)
			}
		}
	}
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lock serialises the operations on one container.
func (m *Manager) lock(id string) func() {
	m.mu.Lock()
	l, ok := m.locks[id]
	if !ok {
		l = &sync.Mutex{}
		m.locks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// beginMaking marks id as being made until the returned func runs. Its
// record is visible (it holds the name, and the kubelet lists it) before
// the pod's shim knows the container: until then the shim's "unknown
// container" means "not yet", not "lost", and the container's lock is held
// so that Start, Stop and Remove wait for the create to end.
func (m *Manager) beginMaking(id string) (done func()) {
	unlock := m.lock(id)
	m.mu.Lock()
	m.making[id] = true
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.making, id)
		m.mu.Unlock()
		unlock()
	}
}

// beingMade says whether id's create has not handed it to its shim yet.
func (m *Manager) beingMade(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.making[id]
}

// locked finds a container by id (or unique prefix), takes its lock and
// reads its record; the caller runs unlock. A container unknown, or
// removed while the lock was awaited, is an error wrapping
// errdefs.ErrNotFound, with nothing left locked.
func (m *Manager) locked(id string) (_ *Record, unlock func(), _ error) {
	id, err := m.resolveID(id)
	if err != nil {
		return nil, nil, err
	}
	unlock = m.lock(id)
	rec, err := m.store.Get(id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return rec, unlock, nil
}

func (m *Manager) forget(id string) {
	m.mu.Lock()
	delete(m.locks, id)
	delete(m.cpu, id)
	m.mu.Unlock()
}

// resolveID finds a container by id or unique id prefix.
func (m *Manager) resolveID(id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("container id: %w: empty", errdefs.ErrInvalidArgument)
	}
	if _, err := m.store.Get(id); err == nil {
		return id, nil
	}
	var found []string
	for _, r := range m.store.List(func(r *Record) bool { return strings.HasPrefix(r.ID, id) }) {
		found = append(found, r.ID)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("container id %q: %w: ambiguous prefix", id, errdefs.ErrInvalidArgument)
	}
}

// StopPod stops every container of a pod at once (the pod is stopping:
// no grace period). It is the sandbox's StopContainers hook.
func (m *Manager) StopPod(ctx context.Context, podID string) error {
	recs := m.store.List(func(r *Record) bool { return r.PodID == podID })
	errc := make(chan error, len(recs))
	for _, r := range recs {
		go func() { errc <- m.Stop(ctx, r.ID, 0) }()
	}
	var errs []string
	for range recs {
		if err := <-errc; err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop containers: %s", strings.Join(errs, "; "))
	}
	return nil
}

// RemovePod removes every container of a pod and cleans up after them
// before it returns (the pod's cgroup and shim go next). It is the
// sandbox's RemoveContainers hook.
func (m *Manager) RemovePod(ctx context.Context, podID string) error {
	var errs []string
	for _, r := range m.store.List(func(r *Record) bool { return r.PodID == podID }) {
		if err := m.Remove(ctx, r.ID); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := m.finishPod(ctx, podID); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove containers: %s", strings.Join(errs, "; "))
	}
	return nil
}
