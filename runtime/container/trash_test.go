package container

import (
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/errdefs"
)

// A trashed record is gone from the store at once (its name free) and its
// cleanup survives a reopen of the database, as after a crash, until it
// is emptied.
func TestTrashSurvivesReopen(t *testing.T) {
	db, path := openDB(t)
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(&Record{ID: "c1", PodID: "p1", Name: "web", LayerDir: "/x/c1"}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Trash("c1")
	if err != nil || r == nil || r.LayerDir != "/x/c1" {
		t.Fatalf("Trash = %+v, %v", r, err)
	}
	if _, err := s.Get("c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get after Trash: %v, want NotFound", err)
	}
	if _, taken := s.NameTaken("p1", "web", 0); taken {
		t.Error("name still taken after Trash")
	}
	if r, err := s.Trash("c1"); r != nil || err != nil {
		t.Errorf("second Trash = %+v, %v; want nothing", r, err)
	}
	db.Close()

	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.List(nil)) != 0 {
		t.Errorf("trashed record listed after reopen")
	}
	left, err := s.loadTrash()
	if err != nil || len(left) != 1 || left[0].ID != "c1" || left[0].LayerDir != "/x/c1" {
		t.Fatalf("loadTrash = %+v, %v", left, err)
	}
	if err := s.emptied("c1"); err != nil {
		t.Fatal(err)
	}
	if left, err := s.loadTrash(); err != nil || len(left) != 0 {
		t.Errorf("loadTrash after emptied = %+v, %v", left, err)
	}
}
