package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim"
)

func TestExitCode(t *testing.T) {
	// Wait statuses as the kernel encodes them: exit code in bits 8-15,
	// a terminating signal in bits 0-6.
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want int
	}{{0, 0}, {1 << 8, 1}, {42 << 8, 42}, {unix.WaitStatus(unix.SIGKILL), 137}, {unix.WaitStatus(unix.SIGTERM), 143}} {
		if got := exitCode(tc.ws); got != tc.want {
			t.Errorf("exitCode(%#x) = %d, want %d", uint32(tc.ws), got, tc.want)
		}
	}
}

func TestCapWriter(t *testing.T) {
	var got bytes.Buffer
	w := &capWriter{w: &got, left: 7 << 20}
	chunk := make([]byte, 5<<20)
	for i := 0; i < 4; i++ {
		if n, err := w.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	if got.Len() != 7<<20 || w.total != 20<<20 {
		t.Fatalf("passed %d bytes of %d, want %d of %d", got.Len(), w.total, 7<<20, 20<<20)
	}
}

func TestWriteExitRecord(t *testing.T) {
	dir := t.TempDir()
	want := shim.ExitRecord{Pid: 42, StartedAt: time.Unix(100, 5).UTC(), FinishedAt: time.Unix(200, 7).UTC(), ExitCode: 137, OOMKilled: true}
	if err := os.WriteFile(filepath.Join(dir, shim.ExitFile), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeExitRecord(dir, want); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, shim.ExitFile))
	if err != nil {
		t.Fatal(err)
	}
	var got shim.ExitRecord
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !got.StartedAt.Equal(want.StartedAt) || !got.FinishedAt.Equal(want.FinishedAt) || got.Pid != want.Pid || got.ExitCode != want.ExitCode || !got.OOMKilled {
		t.Errorf("record %+v, want %+v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only %s", len(entries), shim.ExitFile)
	}
	if err := writeExitRecord(filepath.Join(dir, "missing"), want); err == nil {
		t.Error("write into a missing dir succeeded")
	}
}

// TestWatchLive: a status kept for an earlier process with the same pid
// is not taken for a live process's.
func TestWatchLive(t *testing.T) {
	r := &reaper{watchers: map[int]chan unix.WaitStatus{}, exited: map[int]keptStatus{}}
	self := os.Getpid() // alive: a kept status for it is stale
	r.keep(self, 1<<8, time.Now())
	select {
	case ws := <-r.watchLive(self):
		t.Fatalf("got stale status %#x", uint32(ws))
	default:
	}
	if _, ok := r.exited[self]; ok {
		t.Error("stale status was kept")
	}
	// A pid with no /proc entry was reaped: its status is its own.
	const gone = 1 << 30
	r.keep(gone, 3<<8, time.Now())
	select {
	case ws := <-r.watchLive(gone):
		if ws.ExitStatus() != 3 {
			t.Errorf("status %#x", uint32(ws))
		}
	default:
		t.Error("status of a reaped process was not handed over")
	}
}

// TestReaperKeep: statuses nobody watched are kept a while, and old ones
// make room: the map never fills for good with the exits of processes
// nobody waits for, so a fast exec's status still finds its watcher.
func TestReaperKeep(t *testing.T) {
	r := &reaper{watchers: map[int]chan unix.WaitStatus{}, exited: map[int]keptStatus{}}
	long := time.Now().Add(-2 * keptFor)
	for pid := 1 << 20; pid < 1<<20+2000; pid++ {
		r.keep(pid, 0, long)
	}
	const fresh = 1 << 29
	r.keep(fresh, 7<<8, time.Now())
	if len(r.exited) != 1 {
		t.Errorf("%d statuses kept, want only the fresh one", len(r.exited))
	}
	if ws := <-r.watch(fresh); ws.ExitStatus() != 7 {
		t.Errorf("status %#x", uint32(ws))
	}
}
