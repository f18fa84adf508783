package process

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/containerinit"
	"github.com/berth-dev/berth/runtime/nsenter"
)

// ExecOpts describes a process run inside a running container.
type ExecOpts struct {
	InitPath string
	// PlanPath, if set, is started instead of InitPath when the C code
	// finishes the exec from a plan: a static binary with runtime/nsenter's
	// C code linked in (berth-mon), which starts faster.
	PlanPath string
	// Pid is the container's init (Container.Pid): the process joins all
	// its namespaces.
	Pid int
	// Spec is the container's spec; Process replaces its process (args,
	// env, cwd, user, capabilities, terminal). The process joins the
	// spec's cgroup.
	Spec    *specs.Spec
	Process *specs.Process
	// BundleDir is the container's bundle, where its compiled seccomp
	// program may be (filter.BundleFile); empty: compiled here.
	BundleDir             string
	Stdin, Stdout, Stderr *os.File
	Timeout               time.Duration
	// GoInit runs the Go init even for a process without a terminal,
	// which otherwise the C code of runtime/nsenter finishes
	// (containerinit.ExecPlan) without starting a Go runtime.
	GoInit bool
	// Now lets the command run as soon as its process is made (an
	// ExecSync): where it is safe (spawnSafe), the process is spawned
	// from the caller (nsenter.SpawnExec) and Start only returns.
	Now bool
	// Files, if set, keeps what a spawned exec joins open for the next
	// exec into the same container.
	Files *ExecFiles
}

// Exec starts a process in a running container, held before execve like a
// created container: Start releases it, Wait reaps it, Destroy kills it
// (and only it).
func Exec(o ExecOpts) (*Container, error) {
	if o.Spec == nil || o.Process == nil || len(o.Process.Args) == 0 {
		return nil, errors.New("exec needs the container's spec and a process with args")
	}
	s := *o.Spec
	s.Process = o.Process
	// Without a terminal the C code of runtime/nsenter finishes the exec
	// from a plan; the Go init gets the spec.
	var data []byte
	var env []string
	var err error
	initPath := o.InitPath
	planned := !o.GoInit && !o.Process.Terminal
	if planned {
		if data, err = containerinit.ExecPlan(o.Process, s.Linux.Seccomp != nil); err != nil {
			return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
		}
		env = []string{containerinit.ExecPlanEnv + "=1"}
		if o.PlanPath != "" {
			initPath = o.PlanPath
		}
	} else if data, err = initSpecJSON(&s); err != nil {
		return nil, err
	}
	c := &Container{exec: true}
	if o.Now && planned && spawnSafe(&s) {
		// The namespaces and cgroup are looked up only when their files
		// are opened: kept ones (o.Files) need neither.
		err := c.spawn(o, data, spawnOpener(o, &s))
		if err == nil || !errors.Is(err, errNoSpawn) {
			if err != nil {
				return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
			}
			return c, nil
		}
	}
	nsc, pidNS, err := joinConfig(o.Pid)
	if err != nil {
		return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
	}
	if c.cg, err = openCgroup(&s); err != nil {
		return nil, err
	}
	err = c.launch(launchOpts{
		initPath: initPath, args: []string{containerinit.ExecFlag}, ns: nsc,
		stdin: o.Stdin, stdout: o.Stdout, stderr: o.Stderr, timeout: o.Timeout,
		first: data, seccomp: s.Linux.Seccomp, bundle: o.BundleDir, env: env, pidNS: pidNS,
	})
	if err != nil {
		return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
	}
	return c, nil
}

// spawnOpener opens the files a spawned exec into the container joins.
func spawnOpener(o ExecOpts, s *specs.Spec) func() (*spawnFiles, error) {
	return func() (*spawnFiles, error) {
		nsc, pidNS, err := joinConfig(o.Pid)
		if err != nil {
			return nil, err
		}
		cg, err := openCgroup(s)
		if err != nil {
			return nil, err
		}
		return openSpawnFiles(o, s, cg, nsc, pidNS)
	}
}

// joinConfig is what an exec into the container whose init is pid joins:
// its namespaces, and the path of its PID namespace, which the exec is
// born in.
func joinConfig(pid int) (nsenter.Config, string, error) {
	// The network, IPC, UTS and PID namespaces are always joined, even
	// one that looks like ours: /proc/self/ns shows the main thread's, and
	// the process is forked from whichever thread runs this. The mount,
	// cgroup and user namespaces are process-wide (no thread of ours ever
	// changes them) and can be compared. The PID namespace is joined by
	// being born in it (startInPIDNS), not by nsenter.c.
	nsc := nsenter.Config{Join: map[string]string{}}
	for _, kind := range []string{nsenter.IPC, nsenter.UTS, nsenter.Net, nsenter.Mount} {
		nsc.Join[kind] = fmt.Sprintf("/proc/%d/ns/%s", pid, kind)
	}
	pidNS := fmt.Sprintf("/proc/%d/ns/%s", pid, nsenter.PID)
	// A container that shares our cgroup namespace (cgroup v1) does not
	// join it: from a user namespace it could not (it is the node's).
	cgroupNS := fmt.Sprintf("/proc/%d/ns/%s", pid, nsenter.Cgroup)
	if same, err := isOwnNamespace(cgroupNS, nsenter.Cgroup); err != nil {
		return nsenter.Config{}, "", err
	} else if !same {
		nsc.Join[nsenter.Cgroup] = cgroupNS
	}
	// Joining our own user namespace would fail (EINVAL).
	userNS := fmt.Sprintf("/proc/%d/ns/%s", pid, nsenter.User)
	if same, err := isOwnNamespace(userNS, nsenter.User); err != nil {
		return nsenter.Config{}, "", err
	} else if !same {
		nsc.Join[nsenter.User] = userNS
	}
	same, err := isOwnNamespace(nsc.Join[nsenter.Mount], nsenter.Mount)
	if err != nil {
		return nsenter.Config{}, "", err
	}
	if same {
		return nsenter.Config{}, "", errors.New("it shares the caller's mount namespace")
	}
	return nsc, pidNS, nil
}

// ownNamespaces are this process's mount, cgroup and user namespaces
// (device and inode of /proc/self/ns/<kind>): process-wide, and no thread
// of ours ever changes them, so they are read once.
var ownNamespaces = sync.OnceValues(func() (map[string]unix.Stat_t, error) {
	m := map[string]unix.Stat_t{}
	for _, kind := range []string{nsenter.Mount, nsenter.Cgroup, nsenter.User} {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/ns/"+kind, &st); err != nil {
			return nil, fmt.Errorf("stat own %s namespace: %w", kind, err)
		}
		m[kind] = st
	}
	return m, nil
})

// isOwnNamespace reports whether the namespace file at path is this
// process's namespace of that kind (mount, cgroup or user).
func isOwnNamespace(path, kind string) (bool, error) {
	own, err := ownNamespaces()
	if err != nil {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	return st.Dev == own[kind].Dev && st.Ino == own[kind].Ino, nil
}
