package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// A removal does not wait for the database: moving the record to the trash
// is a bbolt commit, two fdatasyncs, which cost RemoveContainer most of its
// time (1-18 ms on a loaded disk). Instead it creates an empty file named
// for the container in the tombstone dir, on the database's file system,
// and forgets the record in memory; the sweeper moves the record to the
// trash in the database (synced) and only then removes the tombstone and
// starts the cleanup. The file is not synced either: a berthd crash keeps
// it (the page cache outlives the process), and the next start reads the
// tombstones before anything sees the records, so a removed container never
// reappears. Only a power loss within the few milliseconds before the
// sweeper's commit could lose one; the container comes back then exited
// (every container died with the node) with all its files, since no cleanup
// starts before the trash record is on disk, and is removed again.

// tombstoneDir is the tombstones' dir below berthd's root.
const tombstoneDir = "removed-containers"

// openTombstones makes the store remove records through tombstones in dir
// and applies those a previous berthd left: their records go to the trash
// (the caller loads it next) and no longer hold their names.
func (s *Store) openTombstones(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tombstone dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read tombstones: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tombDir = dir
	var dead []*Record
	for _, e := range entries {
		if r, ok := s.records[e.Name()]; ok {
			dead = append(dead, r)
		}
	}
	if len(dead) > 0 {
		if err := s.db.Update(func(tx *bolt.Tx) error { return trashIn(tx, dead...) }); err != nil {
			return fmt.Errorf("apply tombstones: %w", err)
		}
		for _, r := range dead {
			delete(s.records, r.ID)
			s.order.remove(r)
			klog.InfoS("Removed container of a previous run", "container", r.ID)
		}
		// A name freed by a removal may be held by a newer container.
		s.names = map[string]string{}
		for _, r := range s.records {
			s.names[nameKey(r.PodID, r.Name, r.Attempt)] = r.ID
		}
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove tombstone: %w", err)
		}
	}
	return nil
}

// trashIn moves records from the containers bucket to the trash in tx.
func trashIn(tx *bolt.Tx, recs ...*Record) error {
	b, err := tx.CreateBucketIfNotExists(trashBucket)
	if err != nil {
		return err
	}
	for _, r := range recs {
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucket).Delete([]byte(r.ID)); err != nil {
			return err
		}
		if err := b.Put([]byte(r.ID), v); err != nil {
			return err
		}
	}
	return nil
}

// Remove forgets the record of id at once, leaving a tombstone: the caller
// must Persist the removal (then clean up). It returns the record removed
// (nil for an unknown id) and whether its persisting is pending; without a
// tombstone the record is in the trash already, as Trash does.
func (s *Store) Remove(id string) (_ *Record, pending bool, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return nil, false, nil
	}
	if s.tombDir == "" || writeTombstone(filepath.Join(s.tombDir, id)) != nil {
		if err := s.db.Update(func(tx *bolt.Tx) error { return trashIn(tx, r) }); err != nil {
			return nil, false, fmt.Errorf("delete container %s: %w", id, err)
		}
	} else {
		pending = true
	}
	delete(s.records, id)
	s.order.remove(r)
	delete(s.names, nameKey(r.PodID, r.Name, r.Attempt))
	s.changed(r, nil)
	return r.clone(), pending, nil
}

func writeTombstone(path string) error {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		klog.ErrorS(err, "Write container tombstone; removing synchronously", "path", path)
		return err
	}
	return unix.Close(fd)
}

// Persist moves removed records to the trash in the database, synced, and
// then drops their tombstones.
func (s *Store) Persist(recs ...*Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return trashIn(tx, recs...) }); err != nil {
		return fmt.Errorf("persist container removal: %w", err)
	}
	for _, r := range recs {
		if err := os.Remove(filepath.Join(s.tombDir, r.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			klog.ErrorS(err, "Remove container tombstone", "container", r.ID)
		}
	}
	return nil
}
