package nsenter

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Kinds of namespaces, named as in /proc/<pid>/ns.
const (
	User   = "user"
	IPC    = "ipc"
	UTS    = "uts"
	Net    = "net"
	PID    = "pid"
	Cgroup = "cgroup"
	Mount  = "mnt"
)

var known = map[string]bool{User: true, IPC: true, UTS: true, Net: true, PID: true, Cgroup: true, Mount: true}

// Config says which namespaces a process joins (kind → path of a namespace
// file) and which it creates.
type Config struct {
	Join   map[string]string
	New    []string
	SyncFD int // fd in the new process where the forked child's pid (or an error) is written
	// CgroupTasks are cgroup v1 "tasks" files the process writes "0" into
	// while it is one thread, after the namespaces are joined and before
	// it forks into a PID namespace: it moves itself into the cgroup (see
	// cgroupfs.Group.TaskFiles). Missing files are skipped; at least one
	// must exist.
	CgroupTasks []string
}

// Forks reports whether the process forks once more before Go starts (to
// enter a PID namespace); the pid to wait for is then the one reported on
// the sync fd, not the one that was started.
func (c Config) Forks() bool {
	if _, ok := c.Join[PID]; ok {
		return true
	}
	for _, k := range c.New {
		if k == PID {
			return true
		}
	}
	return false
}

// Env returns the environment entries that make the constructor act.
func (c Config) Env() ([]string, error) {
	kinds := make([]string, 0, len(c.Join))
	for k, p := range c.Join {
		if !known[k] {
			return nil, fmt.Errorf("unknown namespace kind %q", k)
		}
		if p == "" || strings.ContainsAny(p, "\n\x00") {
			return nil, fmt.Errorf("bad %s namespace path %q", k, p)
		}
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var join []string
	for _, k := range kinds {
		join = append(join, k+"="+c.Join[k])
	}
	for _, k := range c.New {
		if !known[k] {
			return nil, fmt.Errorf("unknown namespace kind %q", k)
		}
		if _, ok := c.Join[k]; ok {
			return nil, fmt.Errorf("%s namespace both joined and created", k)
		}
	}
	env := []string{
		"_BERTH_NSENTER=1",
		"_BERTH_SYNC_FD=" + strconv.Itoa(c.SyncFD),
		"_BERTH_NS_JOIN=" + strings.Join(join, "\n"),
		"_BERTH_NS_NEW=" + strings.Join(c.New, ","),
	}
	if len(c.CgroupTasks) > 0 {
		for _, p := range c.CgroupTasks {
			if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\n\x00") {
				return nil, fmt.Errorf("bad cgroup tasks path %q", p)
			}
		}
		env = append(env, "_BERTH_CGROUP_TASKS="+strings.Join(c.CgroupTasks, "\n"))
	}
	return env, nil
}
