package container

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/errdefs"
)

func openDB(t *testing.T) (*bolt.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "berth.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db, path
}

func TestStorePersistsAndReloads(t *testing.T) {
	db, path := openDB(t)
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	rec := &Record{ID: "c1", PodID: "p1", Name: "web", Labels: map[string]string{"a": "b"}, Status: Status{State: Created, CreatedAt: now}}
	if err := s.Add(rec); err != nil {
		t.Fatal(err)
	}
	rec.Labels["a"] = "mutated after Add"
	if err := s.Add(&Record{ID: "c2", PodID: "p1", Name: "web"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("same name and attempt: err = %v, want AlreadyExists", err)
	}
	if err := s.Add(&Record{ID: "c2", PodID: "p1", Name: "web", Attempt: 1}); err != nil {
		t.Errorf("next attempt refused: %v", err)
	}

	_, err = s.Update("c1", func(r *Record) error {
		r.Status.State, r.Status.Pid, r.Status.StartedAt = Running, 42, now
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	failed := errors.New("no")
	if _, err := s.Update("c1", func(r *Record) error { r.Status.Pid = 7; return failed }); !errors.Is(err, failed) {
		t.Fatalf("update error not returned: %v", err)
	}
	if _, err := s.Update("nope", func(*Record) error { return nil }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	db.Close()

	db2, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	s2, err := OpenStore(db2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get("c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.State != Running || got.Status.Pid != 42 || got.Labels["a"] != "b" || !got.Status.StartedAt.Equal(now) {
		t.Errorf("reloaded record = %+v", got)
	}
	if len(s2.List(nil)) != 2 {
		t.Errorf("list after reload = %d records, want 2", len(s2.List(nil)))
	}
	if err := s2.Delete("c1"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Delete("c1"); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if err := s2.Add(&Record{ID: "c3", PodID: "p1", Name: "web"}); err != nil {
		t.Errorf("name not freed by delete: %v", err)
	}
}
