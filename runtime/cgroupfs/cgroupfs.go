// Package cgroupfs does what the pod's shim needs of a container's cgroup,
// by plain file operations on the cgroup filesystems (v1 hierarchies or the
// v2 unified one): move a process in, list, kill all, count OOM kills and
// remove the cgroup. It depends on nothing heavy, so that the shim and
// every container's init, which share its binary, start fast and stay
// small; creating a cgroup with resources, updating and reading
// statistics is runtime/cgroups' work, in berthd.
package cgroupfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// hierarchy is one mounted cgroup filesystem.
type hierarchy struct {
	mountpoint  string
	controllers []string // v1: "memory", "cpu", "name=systemd" ...; v2: none listed
	v2          bool
}

var (
	hierOnce sync.Once
	hiers    []hierarchy
	hierErr  error
)

// hierarchies lists the cgroup mounts: every v1 hierarchy, or the unified
// one when /sys/fs/cgroup is cgroup2 (a hybrid host's empty unified mount
// is left out, as the v1 runtimes do).
func hierarchies() ([]hierarchy, error) {
	hierOnce.Do(func() {
		ms, err := cgroupMounts()
		if err != nil {
			hierErr = fmt.Errorf("read cgroup mounts: %w", err)
			return
		}
		seen := map[string]bool{}
		var v1, v2 []hierarchy
		for _, m := range ms {
			if seen[m.mountpoint] {
				continue
			}
			seen[m.mountpoint] = true
			if m.fsType == "cgroup2" {
				v2 = append(v2, hierarchy{mountpoint: m.mountpoint, v2: true})
				continue
			}
			var ctrls []string
			for _, o := range strings.Split(m.superOptions, ",") {
				switch o {
				case "rw", "ro", "":
				default:
					if !strings.Contains(o, "=") || strings.HasPrefix(o, "name=") {
						ctrls = append(ctrls, o)
					}
				}
			}
			v1 = append(v1, hierarchy{mountpoint: m.mountpoint, controllers: ctrls})
		}
		switch {
		case len(v1) > 0:
			hiers = v1
		case len(v2) > 0:
			hiers = v2[:1]
		default:
			hierErr = errors.New("no cgroup filesystem is mounted")
		}
	})
	return hiers, hierErr
}

// Group is one cgroup, by its path below the hierarchies' roots.
type Group struct {
	path   string
	dirs   []string          // the cgroup's dir in each hierarchy
	byCtrl map[string]string // controller → dir
	v2     bool
}

// Open names the cgroup at path ("/berth/pod-x/ctr-y"); it need not exist.
func Open(path string) (*Group, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return nil, fmt.Errorf("cgroup path %q must be absolute, clean and not the root", path)
	}
	hs, err := hierarchies()
	if err != nil {
		return nil, err
	}
	g := &Group{path: path, byCtrl: map[string]string{}}
	for _, h := range hs {
		d := filepath.Join(h.mountpoint, path)
		g.dirs = append(g.dirs, d)
		g.v2 = h.v2
		for _, c := range h.controllers {
			g.byCtrl[c] = d
		}
	}
	return g, nil
}

// Path is the cgroup's path below the hierarchies' roots.
func (g *Group) Path() string { return g.path }

// Dir is the cgroup's dir in the hierarchy of controller (v1), or its one
// dir on cgroup v2; "" when no hierarchy has the controller.
func (g *Group) Dir(controller string) string {
	if g.v2 {
		return g.dirs[0]
	}
	return g.byCtrl[controller]
}

// Unified reports whether the cgroup is on a cgroup v2 host.
func (g *Group) Unified() bool { return g.v2 }

// Exists reports whether the cgroup exists (in its first hierarchy).
func (g *Group) Exists() bool {
	_, err := os.Stat(g.dirs[0])
	return err == nil
}

// UnifiedDir opens the cgroup's directory on a cgroup v2 host, for
// clone3's CLONE_INTO_CGROUP (a process born in its cgroup); nil on v1.
func (g *Group) UnifiedDir() (*os.File, error) {
	if !g.v2 {
		return nil, nil
	}
	f, err := os.OpenFile(g.dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", g.path, err)
	}
	return f, nil
}

// AddProc moves a process into the cgroup in every hierarchy where the
// cgroup exists; it must exist in at least one.
func (g *Group) AddProc(pid int) error {
	added := 0
	for _, d := range g.dirs {
		err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, d, err)
		}
		added++
	}
	if added == 0 {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, g.path, fs.ErrNotExist)
	}
	return nil
}

// TaskFiles are the cgroup's v1 "tasks" files, one per hierarchy; nil on
// cgroup v2. A one-threaded process that writes "0" into them moves itself
// without the kernel's global threadgroup lock, whose taking waits for an
// RCU grace period (milliseconds) on every write of cgroup.procs.
func (g *Group) TaskFiles() []string {
	if g.v2 {
		return nil
	}
	files := make([]string, len(g.dirs))
	for i, d := range g.dirs {
		files[i] = filepath.Join(d, "tasks")
	}
	return files
}

// procsDir is the hierarchy that lists the cgroup's processes.
func (g *Group) procsDir() string {
	for _, c := range []string{"pids", "freezer", "memory", "cpu"} {
		if d, ok := g.byCtrl[c]; ok {
			return d
		}
	}
	return g.dirs[0]
}

// Pids lists the processes in the cgroup and below it.
func (g *Group) Pids() ([]int, error) {
	var pids []int
	var walk func(dir string) error
	walk = func(dir string) error {
		if data, err := ReadFile(dir + "/cgroup.procs"); err == nil {
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		subs, err := Subdirs(dir)
		if err != nil {
			return err
		}
		for _, s := range subs {
			_ = walk(dir + "/" + s) // a child removed meanwhile
		}
		return nil
	}
	if err := walk(g.procsDir()); err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", g.path, err)
	}
	return pids, nil
}

// KillAll sends SIGKILL to every process in the cgroup: through cgroup.kill
// on v2, else with the cgroup frozen so that no process forks past the
// kill. A cgroup that does not exist holds nothing to kill.
func (g *Group) KillAll() error {
	if !g.Exists() {
		return nil
	}
	if g.v2 {
		err := os.WriteFile(filepath.Join(g.dirs[0], "cgroup.kill"), []byte("1"), 0)
		if err == nil {
			return nil
		}
	}
	thaw := g.freeze()
	pids, err := g.Pids()
	if err == nil {
		for _, pid := range pids {
			if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr != nil && kerr != syscall.ESRCH {
				err = fmt.Errorf("kill %d: %w", pid, kerr)
			}
		}
	}
	thaw()
	if err != nil {
		return fmt.Errorf("kill processes of cgroup %s: %w", g.path, err)
	}
	return nil
}

// freeze stops the cgroup's processes if a freezer is available and
// returns how to thaw them.
func (g *Group) freeze() (thaw func()) {
	file, frozen, thawed := "", "", ""
	if g.v2 {
		file, frozen, thawed = filepath.Join(g.dirs[0], "cgroup.freeze"), "1", "0"
	} else if d, ok := g.byCtrl["freezer"]; ok {
		file, frozen, thawed = filepath.Join(d, "freezer.state"), "FROZEN", "THAWED"
	}
	if file == "" {
		return func() {}
	}
	if err := os.WriteFile(file, []byte(frozen), 0); err != nil {
		return func() {}
	}
	// v1 freezes asynchronously; killing while FREEZING is still fine,
	// only slower to take effect, so wait briefly.
	if !g.v2 {
		for i := 0; i < 100; i++ {
			data, err := os.ReadFile(file)
			if err != nil || strings.TrimSpace(string(data)) == "FROZEN" {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return func() { _ = os.WriteFile(file, []byte(thawed), 0) }
}

// OOMKills is how many processes the kernel's OOM killer killed in the
// cgroup. Read it before Remove: the counter goes with the cgroup.
func (g *Group) OOMKills() (uint64, error) {
	var file string
	if g.v2 {
		file = filepath.Join(g.dirs[0], "memory.events")
	} else if d, ok := g.byCtrl["memory"]; ok {
		file = filepath.Join(d, "memory.oom_control")
	} else {
		return 0, nil
	}
	data, err := ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) && g.Exists() {
		// No memory controller in this cgroup: nothing to count.
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read OOM kills of cgroup %s: %w", g.path, err)
	}
	return FlatKeyed(data)["oom_kill"], nil
}

// FlatKeyed parses a cgroup file of "key value" lines.
func FlatKeyed(data []byte) map[string]uint64 {
	out := map[string]uint64{}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// Remove deletes the cgroup (and empty child cgroups) from every
// hierarchy. It must hold no process; processes just killed may take a
// moment to leave, so busy dirs are retried for up to timeout. A cgroup
// already gone is no error.
func (g *Group) Remove(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, d := range g.dirs {
		for {
			err := removeTree(d)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("remove cgroup %s: %w", d, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil
}

// removeTree removes the cgroup dirs below d, deepest first (a cgroup dir
// holds only kernel files, which rmdir takes along).
func removeTree(d string) error {
	entries, err := os.ReadDir(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(d, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}
