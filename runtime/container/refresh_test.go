package container

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/shim"
)

// refreshEnv is a Manager over a fresh store with one created container
// whose pod's shim dir is dir.
func refreshEnv(t *testing.T, dir string) (*Manager, *Record) {
	t.Helper()
	db, _ := openDB(t)
	t.Cleanup(func() { db.Close() })
	st, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{store: st, locks: map[string]*sync.Mutex{}, making: map[string]bool{}}
	rec := &Record{ID: "c1", PodID: "p1", Name: "web", ShimDir: dir, StateDir: t.TempDir(), Status: Status{State: Created, CreatedAt: time.Now()}}
	if err := st.Add(rec); err != nil {
		t.Fatal(err)
	}
	return m, rec
}

// A container whose create has not reached its shim yet is not lost,
// though no shim knows it; once the create is over, a shim that is gone
// means its exit was lost.
func TestRefreshLeavesAContainerBeingMade(t *testing.T) {
	m, rec := refreshEnv(t, t.TempDir()) // no socket: no shim
	done := m.beginMaking(rec.ID)
	got, err := m.refresh(context.Background(), rec, true)
	if err != nil || got.Status.State != Created {
		t.Fatalf("refresh while being made: %v, %v; want created", got.Status.State, err)
	}
	done()
	got, err = m.refresh(context.Background(), rec, true)
	if err != nil || got.Status.State != Exited || got.Status.ExitCode != lostExitCode {
		t.Fatalf("refresh with its shim gone: %+v, %v; want exited %d", got.Status, err, lostExitCode)
	}
}

// A shim whose call failed and whose ping then times out is slow, not
// dead: the container keeps its state.
func TestRefreshSlowShimIsNotDeath(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, shim.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		// The first call's connection is dropped (a read error), every
		// later one left unanswered (a loaded node's shim).
		for first := true; ; first = false {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if first {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	m, rec := refreshEnv(t, dir)
	got, err := m.refresh(context.Background(), rec, true)
	if err == nil || got.Status.State != Created {
		t.Fatalf("refresh with a slow shim: %+v, %v; want created and the call's error", got.Status, err)
	}
	if r, _ := m.store.Get(rec.ID); r.Status.State != Created {
		t.Fatalf("stored state %v, want created", r.Status.State)
	}
}
