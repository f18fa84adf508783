package container

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/errdefs"
)

// A removal through a tombstone is gone from the store at once; if the
// database never heard of it (a crash before the sweeper persisted it),
// the next open applies the tombstone: the record is in the trash, not in
// the list, and its name is held by the newer container that took it.
func TestTombstoneSurvivesCrash(t *testing.T) {
	db, path := openDB(t)
	tombs := filepath.Join(t.TempDir(), tombstoneDir)
	s := openWithTombstones(t, db, tombs)
	for _, r := range []*Record{{ID: "c1", PodID: "p1", Name: "web"}, {ID: "c2", PodID: "p1", Name: "db"}} {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	r, pending, err := s.Remove("c1")
	if err != nil || r == nil || r.ID != "c1" || !pending {
		t.Fatalf("Remove = %+v, %v, %v; want c1 pending", r, pending, err)
	}
	if _, err := os.Stat(filepath.Join(tombs, "c1")); err != nil {
		t.Fatalf("no tombstone: %v", err)
	}
	if _, err := s.Get("c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get after Remove: %v, want NotFound", err)
	}
	if got := viewIDs(s); len(got) != 1 || got[0] != "c2" {
		t.Errorf("view after Remove: %v, want [c2]", got)
	}
	if r, _, err := s.Remove("c1"); r != nil || err != nil {
		t.Errorf("second Remove = %+v, %v; want nothing", r, err)
	}
	// The name is free: a new container takes it before the crash.
	if err := s.Add(&Record{ID: "c3", PodID: "p1", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	db.Close() // the crash: nothing persisted c1's removal

	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = openWithTombstones(t, db, tombs)
	var ids []string
	for _, r := range s.List(nil) {
		ids = append(ids, r.ID)
	}
	if len(ids) != 2 || ids[0] == "c1" || ids[1] == "c1" {
		t.Errorf("listed after reopen: %v, want c2 and c3", ids)
	}
	if got := viewIDs(s); len(got) != 2 || got[0] == "c1" || got[1] == "c1" {
		t.Errorf("view after reopen: %v, want c2 and c3", got)
	}
	if id, _ := s.NameTaken("p1", "web", 0); id != "c3" {
		t.Errorf("name held by %q after reopen, want c3", id)
	}
	left, err := s.loadTrash()
	if err != nil || len(left) != 1 || left[0].ID != "c1" {
		t.Errorf("trash after reopen = %+v, %v; want c1", left, err)
	}
	if ents, _ := os.ReadDir(tombs); len(ents) != 0 {
		t.Errorf("tombstones left after they were applied: %v", ents)
	}
}

// Persist moves a removal to the trash in the database and drops its
// tombstone; a reopen then finds it in the trash only.
func TestTombstonePersist(t *testing.T) {
	db, path := openDB(t)
	tombs := filepath.Join(t.TempDir(), tombstoneDir)
	s := openWithTombstones(t, db, tombs)
	if err := s.Add(&Record{ID: "c1", PodID: "p1", Name: "web", LayerDir: "/x/c1"}); err != nil {
		t.Fatal(err)
	}
	r, _, err := s.Remove("c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Persist(r); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tombs, "c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tombstone after Persist: %v", err)
	}
	db.Close()
	if db, err = bolt.Open(path, 0o600, nil); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s, err = OpenStore(db); err != nil {
		t.Fatal(err)
	}
	if len(s.List(nil)) != 0 {
		t.Error("persisted removal listed after reopen")
	}
	left, err := s.loadTrash()
	if err != nil || len(left) != 1 || left[0].LayerDir != "/x/c1" {
		t.Errorf("trash = %+v, %v; want c1", left, err)
	}
}

// Without a tombstone dir a removal is synchronous: nothing is pending.
func TestRemoveWithoutTombstones(t *testing.T) {
	db, _ := openDB(t)
	defer db.Close()
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(&Record{ID: "c1", PodID: "p1", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if r, pending, err := s.Remove("c1"); err != nil || r == nil || pending {
		t.Fatalf("Remove = %+v, %v, %v; want done", r, pending, err)
	}
	if left, err := s.loadTrash(); err != nil || len(left) != 1 {
		t.Errorf("trash = %+v, %v; want c1", left, err)
	}
}

// viewIDs are the ids of the records in list order (what the CRI lists use).
func viewIDs(s *Store) []string {
	var ids []string
	for _, r := range s.view(func(*Record) bool { return true }) {
		ids = append(ids, r.ID)
	}
	return ids
}

// openWithTombstones opens the store of db as berthd's start does: the
// records, then the tombstones left in tombs.
func openWithTombstones(t *testing.T, db *bolt.DB, tombs string) *Store {
	t.Helper()
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.openTombstones(tombs); err != nil {
		t.Fatal(err)
	}
	return s
}
