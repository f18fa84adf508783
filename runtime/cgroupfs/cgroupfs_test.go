package cgroupfs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestFlatKeyed(t *testing.T) {
	got := FlatKeyed([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\nbad\n"))
	if got["oom_kill"] != 3 || got["under_oom"] != 0 || len(got) != 3 {
		t.Fatalf("%v", got)
	}
}

func TestBadPath(t *testing.T) {
	for _, p := range []string{"", "/", "rel", "/a/../b"} {
		if _, err := Open(p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// makeGroup creates a cgroup by hand (mkdir in every hierarchy, as
// runtime/cgroups would) and returns it.
func makeGroup(t *testing.T) *Group {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	parent := "/berth-cgfs-" + filepath.Base(filepath.Dir(dir)) + "-" + filepath.Base(dir)
	g, err := Open(parent + "/ctr")
	if err != nil {
		t.Fatal(err)
	}
	pg, _ := Open(parent)
	for _, d := range g.dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A v1 cpuset child needs cpus and mems before it takes a process.
	if d, ok := g.byCtrl["cpuset"]; ok {
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			for _, dd := range []string{filepath.Dir(d), d} {
				v, err := os.ReadFile(filepath.Join(filepath.Dir(dd), f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dd, f), v, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Cleanup(func() {
		if err := pg.Remove(5 * time.Second); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	return g
}

func TestAddKillRemove(t *testing.T) {
	g := makeGroup(t)
	if !g.Exists() {
		t.Fatal("made cgroup does not exist")
	}
	var cmds []*exec.Cmd
	for i := 0; i < 3; i++ {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		if err := g.AddProc(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	pids, err := g.Pids()
	if err != nil {
		t.Fatal(err)
	}
	// The parent lists its child's processes too.
	parent, err := Open(filepath.Dir(g.Path()))
	if err != nil {
		t.Fatal(err)
	}
	below, err := parent.Pids()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if !slices.Contains(pids, c.Process.Pid) {
			t.Errorf("pid %d not listed in %v", c.Process.Pid, pids)
		}
		if !slices.Contains(below, c.Process.Pid) {
			t.Errorf("pid %d not listed in the parent's %v", c.Process.Pid, below)
		}
	}
	if _, err := (&Group{path: "/none", dirs: []string{g.dirs[0] + "-none"}}).Pids(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("processes of a missing cgroup: %v", err)
	}
	if n, err := g.OOMKills(); err != nil || n != 0 {
		t.Errorf("OOM kills %d %v", n, err)
	}
	if err := g.KillAll(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
				t.Errorf("sleep ended with %v, want killed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("KillAll left a process running")
		}
	}
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if g.Exists() {
		t.Fatal("cgroup left after Remove")
	}
	for _, d := range g.dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", d, err)
		}
	}
	if err := g.Remove(time.Second); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := g.KillAll(); err != nil {
		t.Errorf("KillAll of a removed cgroup: %v", err)
	}
	if err := g.AddProc(os.Getpid()); err == nil {
		t.Error("AddProc into a missing cgroup succeeded")
	}
}
