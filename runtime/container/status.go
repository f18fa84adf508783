package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
)

// Filter selects containers in List; zero fields match everything.
type Filter struct {
	ID            string // exact or prefix
	PodID         string // exact or prefix
	State         *State
	LabelSelector map[string]string
}

// All says whether the filter selects every container.
func (f Filter) All() bool {
	return f.ID == "" && f.PodID == "" && f.State == nil && len(f.LabelSelector) == 0
}

// Match says whether the filter selects r.
func (f Filter) Match(r *Record) bool {
	if f.ID != "" && !strings.HasPrefix(r.ID, f.ID) {
		return false
	}
	if f.PodID != "" && !strings.HasPrefix(r.PodID, f.PodID) {
		return false
	}
	if f.State != nil && r.Status.State != *f.State {
		return false
	}
	for k, v := range f.LabelSelector {
		if got, ok := r.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Status returns a container's record, brought up to date with its shim.
func (m *Manager) Status(ctx context.Context, id string) (*Record, error) {
	id, err := m.resolveID(id)
	if err != nil {
		return nil, err
	}
	rec, err := m.store.Get(id)
	if err != nil {
		return nil, err
	}
	// No lock: a status must not wait for a stop's grace period. A refresh
	// only records what the shim or its exit record say, and an exit is
	// never undone, so racing refreshes agree.
	r, err := m.refresh(ctx, rec, m.askShim(rec))
	if err != nil {
		// A shim that does not answer in time leaves the last known state.
		return rec, nil
	}
	return r, nil
}

// askShim says whether a status must ask the pod's shim. It need not for a
// container whose exit record is watched (its exit reaches the record by
// inotify, and refresh reads the record besides) in a pod whose shim is
// alive: the shim would only repeat the record. The call woke an idle shim
// and cost milliseconds more the more pods the node had; the shim's death is
// seen here through its pid, as the watcher's rounds see it.
func (m *Manager) askShim(rec *Record) bool {
	if rec.Status.State == Exited || !m.exits.watching(rec.ID) || m.opts.Pods == nil {
		return true
	}
	p, err := m.opts.Pods.Pod(rec.PodID)
	return err != nil || !p.Ready
}

// List returns the containers the filter selects, oldest first, as the
// records say: exits reach the records as the shims write them
// (exitwatch.go) and the watcher's rounds (watch.go), so listing costs no
// file read or shim call per container. The records are shared: read only.
func (m *Manager) List(_ context.Context, f Filter) []*Record {
	return m.store.view(f.Match)
}

// Info is the runtime detail of a container shown by a verbose status.
type Info struct {
	Pid         int             `json:"pid"`
	SandboxID   string          `json:"sandboxID"`
	StateDir    string          `json:"stateDir"`
	Bundle      string          `json:"bundle"`
	SpecPath    string          `json:"specPath"`
	Rootfs      string          `json:"rootfs"`
	LayerDir    string          `json:"layerDir"`
	Cgroup      string          `json:"cgroup"`
	ShimDir     string          `json:"shimDir"`
	CDIDevices  []string        `json:"cdiDevices,omitempty"`
	RuntimeSpec json.RawMessage `json:"runtimeSpec,omitempty"`
}

// InfoOf gathers a record's runtime detail (the spec, while the state dir
// holds it).
func InfoOf(r *Record) Info {
	info := Info{
		Pid: r.Status.Pid, SandboxID: r.PodID, StateDir: r.StateDir, Bundle: r.StateDir,
		SpecPath: filepath.Join(r.StateDir, specFile), Rootfs: filepath.Join(r.StateDir, rootfsDir),
		LayerDir: r.LayerDir, Cgroup: r.Cgroup, ShimDir: r.ShimDir,
		CDIDevices: r.CDIDevices,
	}
	if data, err := os.ReadFile(info.SpecPath); err == nil && json.Valid(data) {
		info.RuntimeSpec = data
	}
	return info
}
