// Package container keeps berthd's records of containers: what was asked for
// and the status the shim reported, persisted in the metadata database.
// A record changes only through Store.Update, which writes it in one
// transaction before the change is visible, so a crash never leaves a record
// that disagrees with the database.
package container

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/errdefs"
)

var bucket = []byte("containers")

// State is where a container is in its life.
type State int

const (
	Created State = iota
	Running
	Exited
	Unknown
)

func (s State) String() string {
	return [...]string{"created", "running", "exited", "unknown"}[s]
}

// Status is what is known of the container's process.
type Status struct {
	State      State     `json:"state"`
	Pid        int       `json:"pid,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	ExitCode   int32     `json:"exitCode"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
}

// Mount is a volume as the container sees it, reported back in status.
type Mount struct {
	ContainerPath  string `json:"containerPath"`
	HostPath       string `json:"hostPath"`
	Readonly       bool   `json:"readonly,omitempty"`
	RecursiveRO    bool   `json:"recursiveReadOnly,omitempty"`
	SELinuxRelabel bool   `json:"selinuxRelabel,omitempty"`
	Propagation    int32  `json:"propagation,omitempty"`
	// Image names the image of an image volume (its ImageID once resolved)
	// and ImageSubPath the part of it mounted.
	Image        string `json:"image,omitempty"`
	ImageID      string `json:"imageId,omitempty"`
	ImageSubPath string `json:"imageSubPath,omitempty"`
}

// Record is one container.
type Record struct {
	ID      string `json:"id"`
	PodID   string `json:"podId"`
	Name    string `json:"name"`
	Attempt uint32 `json:"attempt"`
	Image   string `json:"image"` // as the request named it
	// UserImage is the image as the pod spec names it; the kubelet asks
	// for the resolved image id (Image) and sends the name beside it.
	UserImage   string            `json:"userImage,omitempty"`
	ImageID     string            `json:"imageId"` // config digest
	ImageRef    string            `json:"imageRef"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	LogPath     string            `json:"logPath,omitempty"`
	Mounts      []Mount           `json:"mounts,omitempty"`
	Status      Status            `json:"status"`

	// ShimDir is the pod's state dir, where its shim's control socket is.
	ShimDir string `json:"shimDir"`
	// StateDir is the container's volatile dir: bundle (config.json), the
	// rootfs mount point and the shim's exit record.
	StateDir string `json:"stateDir"`
	// LayerDir is the container's persistent dir: overlay upper and work.
	LayerDir string `json:"layerDir"`
	// Cgroup is the container's cgroupfs path, below the pod's.
	Cgroup string `json:"cgroup"`
	// StopSignal is the image's stop signal ("" for SIGTERM).
	StopSignal string `json:"stopSignal,omitempty"`
	Tty        bool   `json:"tty,omitempty"`
	Stdin      bool   `json:"stdin,omitempty"`
	StdinOnce  bool   `json:"stdinOnce,omitempty"`
	// User the process runs as, for ContainerStatus.
	UID              int64   `json:"uid"`
	GID              int64   `json:"gid"`
	SupplementalGIDs []int64 `json:"supplementalGids,omitempty"`
	// Resources are the container's current cgroup limits.
	Resources *Resources `json:"resources,omitempty"`
	// CDIDevices are the CDI devices the container got (runtime/cdi).
	CDIDevices []string `json:"cdiDevices,omitempty"`
	// Hooks: the spec names OCI hooks to run at start and removal (hooks.go).
	Hooks bool `json:"hooks,omitempty"`
}

// Resources are a container's cgroup limits as the CRI states them.
type Resources struct {
	CPUPeriod       int64             `json:"cpuPeriod,omitempty"`
	CPUQuota        int64             `json:"cpuQuota,omitempty"`
	CPUShares       int64             `json:"cpuShares,omitempty"`
	MemoryLimit     int64             `json:"memoryLimit,omitempty"`
	OOMScoreAdj     int64             `json:"oomScoreAdj,omitempty"`
	CpusetCpus      string            `json:"cpusetCpus,omitempty"`
	CpusetMems      string            `json:"cpusetMems,omitempty"`
	MemorySwapLimit int64             `json:"memorySwapLimit,omitempty"`
	Unified         map[string]string `json:"unified,omitempty"`
}

func (r *Record) clone() *Record {
	c := *r
	c.Labels = cloneMap(r.Labels)
	c.Annotations = cloneMap(r.Annotations)
	c.Mounts = append([]Mount(nil), r.Mounts...)
	c.SupplementalGIDs = append([]int64(nil), r.SupplementalGIDs...)
	c.CDIDevices = append([]string(nil), r.CDIDevices...)
	if r.Resources != nil {
		res := *r.Resources
		res.Unified = cloneMap(r.Resources.Unified)
		c.Resources = &res
	}
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Store is the set of container records, cached in memory over bbolt.
type Store struct {
	db *bolt.DB

	mu      sync.RWMutex
	records map[string]*Record
	order   byAge             // records, oldest first (order.go)
	names   map[string]string // nameKey → id
	// notify sees every change under mu, so events keep their order (events.go).
	notify func(prev, cur *Record)
	// tombDir holds the tombstones of removals not yet persisted
	// (tombstone.go); "" removes synchronously.
	tombDir string
}

func nameKey(podID, name string, attempt uint32) string {
	return fmt.Sprintf("%s/%s/%d", podID, name, attempt)
}

// OpenStore loads every container record from db.
func OpenStore(db *bolt.DB) (*Store, error) {
	s := &Store{db: db, records: map[string]*Record{}, names: map[string]string{}}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode container %s: %w", k, err)
			}
			s.records[r.ID] = &r
			s.names[nameKey(r.PodID, r.Name, r.Attempt)] = r.ID
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load container records: %w", err)
	}
	s.order = sorted(s.records)
	return s, nil
}

func (s *Store) put(tx *bolt.Tx, r *Record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(r.ID), v)
}

// Add records a new container; a container of the same pod with the same
// name and attempt is refused, as the kubelet expects.
func (s *Store) Add(r *Record) error {
	return s.AddWith(r, s.db.Update)
}

// AddWith is Add whose record is written by commit: it must run put in a
// read-write transaction of the store's database, which may write more
// (the image lease of the container), so that one commit stores both.
func (s *Store) AddWith(r *Record, commit func(put func(tx *bolt.Tx) error) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := nameKey(r.PodID, r.Name, r.Attempt)
	if id, ok := s.names[key]; ok {
		return fmt.Errorf("container name %q (attempt %d) in pod %s is taken by %s: %w", r.Name, r.Attempt, r.PodID, id, errdefs.ErrAlreadyExists)
	}
	if _, ok := s.records[r.ID]; ok {
		return fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	r = r.clone()
	if err := commit(func(tx *bolt.Tx) error { return s.put(tx, r) }); err != nil {
		return fmt.Errorf("store container %s: %w", r.ID, err)
	}
	s.records[r.ID] = r
	s.order.add(r)
	s.names[key] = r.ID
	s.changed(nil, r)
	return nil
}

// NameTaken returns the container that holds a pod's name and attempt.
func (s *Store) NameTaken(podID, name string, attempt uint32) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.names[nameKey(podID, name, attempt)]
	return id, ok
}

// Get returns a copy of the record of id.
func (s *Store) Get(id string) (*Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.records[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return r.clone(), nil
}

// Update applies fn to a copy of the record and persists the result before
// it becomes visible; if fn fails nothing changes.
func (s *Store) Update(id string, fn func(*Record) error) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.records[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	r := old.clone()
	if err := fn(r); err != nil {
		return nil, err
	}
	r.ID, r.PodID, r.Name, r.Attempt = old.ID, old.PodID, old.Name, old.Attempt
	if err := s.db.Update(func(tx *bolt.Tx) error { return s.put(tx, r) }); err != nil {
		return nil, fmt.Errorf("store container %s: %w", id, err)
	}
	s.records[id] = r
	s.order.replace(old, r)
	s.changed(old, r)
	return r.clone(), nil
}

// Delete forgets the container; deleting an unknown id is not an error.
func (s *Store) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	delete(s.records, id)
	s.order.remove(r)
	delete(s.names, nameKey(r.PodID, r.Name, r.Attempt))
	s.changed(r, nil)
	return nil
}

// view returns the records for which keep returns true, oldest first,
// without copies: a record is never changed in place (Update stores a new
// one), so the caller may read them, never write.
func (s *Store) view(keep func(*Record) bool) []*Record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Record, 0, len(s.order))
	for _, r := range s.order {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// List returns copies of the records for which keep returns true (all when
// keep is nil), oldest first.
func (s *Store) List(keep func(*Record) bool) []*Record {
	s.mu.RLock()
	var out []*Record
	for _, r := range s.records {
		if keep == nil || keep(r) {
			out = append(out, r.clone())
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Status.CreatedAt.Before(out[j].Status.CreatedAt) })
	return out
}
