package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/shim"
)

// A removed container leaves its record for the trash in the same database
// transaction that deletes it, so RemoveContainer returns once the
// container is gone from every list and its name is free; the slow part
// (the shim's delete, the cgroup, unmounting the rootfs, removing the
// upper dir, the image lease) runs in the background. A crash before the
// background is done leaves the trash record, and the next start finishes
// it: nothing is leaked, and nothing is done twice that cannot be.
var trashBucket = []byte("container-trash")

// retryTrash is how long a cleanup that failed waits before it is tried again.
const retryTrash = 5 * time.Second

// trash is the cleanups still to do.
type trash struct {
	mu    sync.Mutex
	items map[string]*trashItem
	kick  chan struct{}
	hold  bool
}

type trashItem struct {
	rec *Record
	// pending: the record is still in the containers bucket, its
	// tombstone on disk (tombstone.go); the cleanup persists it first.
	pending bool
	// busy is set while a cleanup runs; done is closed when it ended
	// (whatever its outcome) and replaced when busy is set again.
	busy bool
	done chan struct{}
	err  error
	next time.Time // earliest retry after a failure
}

func newTrash(hold bool) *trash {
	return &trash{items: map[string]*trashItem{}, kick: make(chan struct{}, 1), hold: hold}
}

// loadTrash reads the cleanups a previous berthd left undone.
func (s *Store) loadTrash() ([]*Record, error) {
	var out []*Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(trashBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode removed container %s: %w", k, err)
			}
			out = append(out, &r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load removed containers: %w", err)
	}
	return out, nil
}

// Trash deletes the record of id and keeps it for its cleanup, in one
// transaction; it returns the record trashed (nil for an unknown id).
func (s *Store) Trash(id string) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return nil, nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return trashIn(tx, r) }); err != nil {
		return nil, fmt.Errorf("delete container %s: %w", id, err)
	}
	delete(s.records, id)
	s.order.remove(r)
	delete(s.names, nameKey(r.PodID, r.Name, r.Attempt))
	s.changed(r, nil)
	return r.clone(), nil
}

// emptied forgets the trash record of a finished cleanup.
func (s *Store) emptied(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(trashBucket)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(id))
	})
}

// throwAway queues the cleanup of a removed record (pending: its removal
// is still to persist).
func (m *Manager) throwAway(rec *Record, pending bool) {
	m.trash.mu.Lock()
	if _, ok := m.trash.items[rec.ID]; !ok {
		m.trash.items[rec.ID] = &trashItem{rec: rec, pending: pending}
	}
	m.trash.mu.Unlock()
	select {
	case m.trash.kick <- struct{}{}:
	default:
	}
}

// claim marks an item busy and returns it, or returns the done channel of
// a cleanup already running (nil item), or nothing for an unknown id.
func (m *Manager) claim(id string, force bool) (*trashItem, chan struct{}) {
	m.trash.mu.Lock()
	defer m.trash.mu.Unlock()
	it, ok := m.trash.items[id]
	if !ok {
		return nil, nil
	}
	if it.busy {
		return nil, it.done
	}
	if !force && time.Now().Before(it.next) {
		return nil, nil
	}
	it.busy, it.done = true, make(chan struct{})
	return it, nil
}

// cleanup runs a claimed item's cleanup, or only persists its removal,
// and records its outcome.
func (m *Manager) cleanup(ctx context.Context, it *trashItem, persistOnly bool) error {
	var err error
	if it.pending {
		// Nothing is removed before the trash record is on disk.
		if err = m.store.Persist(it.rec); err == nil {
			m.trash.mu.Lock()
			it.pending = false
			m.trash.mu.Unlock()
		}
	}
	if err == nil && !persistOnly {
		err = m.dispose(ctx, it.rec)
		if err == nil {
			err = m.store.emptied(it.rec.ID)
		}
	}
	m.trash.mu.Lock()
	it.busy, it.err = false, err
	switch {
	case err != nil:
		it.next = time.Now().Add(retryTrash)
	case !persistOnly:
		delete(m.trash.items, it.rec.ID)
	}
	close(it.done)
	m.trash.mu.Unlock()
	return err
}

// dispose removes what a container left: its process and the shim's
// record of it, its cgroup, rootfs mount, state and upper dirs, and its
// image leases. Each step is safe to repeat after a crash.
func (m *Manager) dispose(ctx context.Context, rec *Record) error {
	steps := newStepTimer()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := shim.Connect(rec.ShimDir).Call(sctx, shim.OpDelete, shim.IDArgs{ID: rec.ID}, nil)
	cancel()
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) && !shimGone(rec.ShimDir) {
		return fmt.Errorf("clean up container %s: %w", rec.ID, err)
	}
	// The shim removes the cgroup once the exit is recorded; without a
	// shim nobody else would.
	killCgroup(rec.Cgroup)
	steps.mark("shim")
	if err := removeDirs(rec.StateDir); err != nil {
		return fmt.Errorf("clean up container %s: %w", rec.ID, err)
	}
	if err := os.RemoveAll(rec.LayerDir); err != nil {
		return fmt.Errorf("clean up container %s: %w", rec.ID, err)
	}
	steps.mark("dirs")
	if err := m.opts.Images.RemoveUser(rec.ID); err != nil {
		return fmt.Errorf("clean up container %s: %w", rec.ID, err)
	}
	if err := m.releaseVolumes(rec); err != nil {
		return fmt.Errorf("clean up container %s: %w", rec.ID, err)
	}
	steps.mark("lease")
	klog.V(2).InfoS("Container cleaned up", "container", rec.ID, "steps", steps)
	return nil
}

// sweep cleans up, in the background, what removals left, until Close.
func (m *Manager) sweep() {
	retry := time.NewTicker(retryTrash)
	defer retry.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-m.trash.kick:
		case <-retry.C:
		}
		if m.trash.hold {
			continue
		}
		m.trash.mu.Lock()
		ids := make([]string, 0, len(m.trash.items))
		var pending []string
		for id, it := range m.trash.items {
			ids = append(ids, id)
			if it.pending {
				pending = append(pending, id)
			}
		}
		m.trash.mu.Unlock()
		// Every removal is persisted before any slow cleanup: it is only
		// crash-safe, not power-loss-safe, until then.
		for _, persistOnly := range []bool{true, false} {
			todo := ids
			if persistOnly {
				todo = pending
			}
			for _, id := range todo {
				it, _ := m.claim(id, false)
				if it == nil {
					continue
				}
				if err := m.cleanup(context.Background(), it, persistOnly); err != nil {
					klog.ErrorS(err, "Clean up removed container, will retry", "container", id)
				}
			}
		}
	}
}

// finishPod runs now the cleanups left of a pod's containers (a pod's
// removal needs their cgroups gone before its own), waiting for those
// already running.
func (m *Manager) finishPod(ctx context.Context, podID string) error {
	m.trash.mu.Lock()
	var ids []string
	for id, it := range m.trash.items {
		if it.rec.PodID == podID {
			ids = append(ids, id)
		}
	}
	m.trash.mu.Unlock()
	var errs []error
	for _, id := range ids {
		for {
			it, running := m.claim(id, true)
			if running != nil {
				select {
				case <-running:
					continue // claim again: done, or failed and idle
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if it != nil {
				if err := m.cleanup(ctx, it, false); err != nil {
					errs = append(errs, err)
				}
			}
			break
		}
	}
	return errors.Join(errs...)
}
