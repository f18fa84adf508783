package process

import (
	"errors"
	"fmt"
	"os"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/runtime/containerinit"
	"github.com/berth-dev/berth/runtime/nsenter"
)

// errNoSpawn: the process could not be spawned and nothing was started;
// the caller starts the helper instead.
var errNoSpawn = errors.New("no spawn")

// spawnSafe reports whether an exec in the container may be spawned from
// the caller (nsenter.SpawnExec): until its execve that process shares the
// caller's memory, which is not dumpable, so ptrace or /proc/<pid>/mem of
// it takes CAP_SYS_PTRACE in the node's user namespace. No process that
// can see it may have that: a container in a user namespace of its own
// cannot; one without must not have CAP_SYS_PTRACE in its bounding set and
// must have a PID namespace of its own (a pod's shared one, or the node's,
// holds other containers' processes).
func spawnSafe(s *specs.Spec) bool {
	if s.Linux == nil || s.Process == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return true
		}
	}
	if c := s.Process.Capabilities; c == nil || slices.Contains(c.Bounding, "CAP_SYS_PTRACE") {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// spawn starts the exec's process with nsenter.SpawnExec: the files it
// needs are opened here, in the caller's mount namespace.
func (c *Container) spawn(o ExecOpts, s *specs.Spec, plan []byte, nsc nsenter.Config, pidNS string) error {
	sp := nsenter.Spawn{Plan: plan, CgroupDir: -1, Seccomp: -1}
	// Plain descriptors: an os.File would be offered to the poller first.
	var opened []int
	defer func() {
		for _, fd := range opened {
			unix.Close(fd)
		}
	}()
	open := func(path string, flag int) (int, error) {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		opened = append(opened, fd)
		return fd, nil
	}
	for _, kind := range nsenter.JoinOrder {
		path, ok := nsc.Join[kind]
		if !ok {
			continue
		}
		fd, err := open(path, unix.O_RDONLY)
		if err != nil {
			return fmt.Errorf("open %s namespace: %w", kind, err)
		}
		sp.Join, sp.Kinds = append(sp.Join, fd), append(sp.Kinds, kind)
	}
	if c.cg != nil {
		// As nsenter.c: a hierarchy without the cgroup is skipped.
		for _, path := range c.cg.TaskFiles() {
			fd, err := open(path, unix.O_WRONLY)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("join cgroup: %w", err)
			}
			sp.CgroupTasks = append(sp.CgroupTasks, fd)
		}
		dir, err := c.cg.UnifiedDir()
		if err != nil {
			return err
		}
		if dir != nil {
			defer dir.Close()
			sp.CgroupDir = int(dir.Fd())
		}
		if len(sp.CgroupTasks) == 0 && sp.CgroupDir < 0 {
			return errors.New("join cgroup: no hierarchy has it")
		}
	}
	for i, f := range []*os.File{o.Stdin, o.Stdout, o.Stderr} {
		if f == nil {
			null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer null.Close()
			f = null
		}
		sp.Stdio[i] = f
	}
	if s.Linux.Seccomp != nil {
		prog, err := seccompFile(o.BundleDir, s.Linux.Seccomp)
		if err != nil {
			return err
		}
		defer prog.Close()
		sp.Seccomp = int(prog.Fd())
	}
	var pid int
	err := inPIDNS(pidNS, func() (err error) {
		pid, err = nsenter.SpawnExec(&sp)
		return err
	})
	if pid > 0 {
		// Started, even if it failed before its execve: the caller's
		// reaper has it.
		c.pid, c.spawned = pid, true
		c.proc, _ = os.FindProcess(pid)
		if err != nil {
			// Gone or going (it failed before its execve); whoever
			// reaps first has it.
			_, _ = c.proc.Wait()
		}
	}
	var pe *nsenter.PlanError
	switch {
	case errors.As(err, &pe):
		return initError(containerinit.MsgError + " " + pe.Msg)
	case err != nil && pid == 0:
		klog.V(2).InfoS("Exec not spawned, starting the helper", "pid", o.Pid, "err", err)
		return fmt.Errorf("%w: %w", errNoSpawn, err)
	}
	return err
}
