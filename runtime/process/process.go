// Package process creates container processes: it starts "berth-shim init"
// in the container's namespaces (see runtime/nsenter), puts it into its
// cgroup, waits until the init reports ready (stopped before execve), and
// releases it on Start. The caller (the pod's shim, or a test) is the
// parent and reaper of the container process.
//
//	c, err := process.Create(process.CreateOpts{InitPath: shim, BundleDir: b})
//	// c.Pid() runs berth-shim init, set up, in the container's cgroup
//	err = c.Start()      // execve of the command; an exec error comes back here
//	st, err := c.Wait()  // or the caller's own reaper (wait4 of c.Pid())
//	oom := c.OOMKilled() // before Destroy
//	err = c.Destroy()    // kill everything in the cgroup, remove the cgroup
//
// The cgroup named by spec.Linux.CgroupsPath must exist: berthd creates it
// with the container's resources (runtime/cgroups) before the create.
package process

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/containerinit"
)

// Container is a created container process.
type Container struct {
	pid     int
	proc    *os.Process
	sync    *net.UnixConn
	pending []byte // read from sync, not yet consumed
	cg      *cgroupfs.Group
	exec    bool // an Exec: Destroy kills only this process
	spawned bool // running its command already: Start only returns
	// Console is the pty master when the spec asked for a terminal; the
	// caller owns it.
	Console *os.File
}

// ExitStatus is how the container's process ended.
type ExitStatus struct {
	Code     int // exit code, or 128+signal
	Signaled bool
	At       time.Time
}

// abort kills what Create started.
func (c *Container) abort() {
	if c.proc != nil {
		_ = c.proc.Kill()
		_, _ = c.proc.Wait()
	}
	if c.Console != nil {
		c.Console.Close()
		c.Console = nil
	}
	if c.sync != nil {
		c.sync.Close()
		c.sync = nil
	}
}

// Pid is the container's init process in the caller's PID namespace.
func (c *Container) Pid() int { return c.pid }

// Spawned reports whether the process was spawned from the caller
// (ExecOpts.Now) and runs its command already.
func (c *Container) Spawned() bool { return c.spawned }

// Cgroup is the container's cgroup (nil if the spec has none).
func (c *Container) Cgroup() *cgroupfs.Group { return c.cg }

// Start lets the process exec its command and reports whether the exec
// succeeded.
func (c *Container) Start() error {
	if c.spawned {
		return nil
	}
	if c.sync == nil {
		return errors.New("container already started")
	}
	defer func() { c.sync.Close(); c.sync = nil }()
	if _, err := c.sync.Write([]byte(containerinit.MsgStart + "\n")); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	line, err := c.readMsg()
	if errors.Is(err, io.EOF) {
		// The socket closed on exec.
		return nil
	}
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	return fmt.Errorf("start container: %w", initError(line))
}

// Signal sends sig to the container's init.
func (c *Container) Signal(sig syscall.Signal) error {
	if err := c.proc.Signal(sig); err != nil {
		return fmt.Errorf("signal %d: %w", c.pid, err)
	}
	return nil
}

// Wait reaps the container's init.
func (c *Container) Wait() (ExitStatus, error) {
	ps, err := c.proc.Wait()
	if err != nil {
		return ExitStatus{}, fmt.Errorf("wait %d: %w", c.pid, err)
	}
	return exitStatus(ps), nil
}

func exitStatus(ps *os.ProcessState) ExitStatus {
	st := ExitStatus{At: time.Now(), Code: ps.ExitCode()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Signaled = true
		st.Code = 128 + int(ws.Signal())
	}
	return st
}

// OOMKilled reports whether the kernel's OOM killer killed a process of the
// container; call it before Destroy.
func (c *Container) OOMKilled() bool {
	if c.cg == nil {
		return false
	}
	n, err := c.cg.OOMKills()
	return err == nil && n > 0
}

// Destroy kills the container: every process of its cgroup, which it
// then removes (read OOMKilled before), or only its own process for an
// Exec or a container without cgroup. It does not reap the init: call
// Wait. Calling it again is harmless.
func (c *Container) Destroy() error {
	if c.sync != nil {
		c.sync.Close()
		c.sync = nil
	}
	if c.exec || c.cg == nil {
		if err := c.proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill %d: %w", c.pid, err)
		}
		return nil
	}
	if err := c.cg.KillAll(); err != nil {
		return err
	}
	// Killed processes leave the cgroup once reaped.
	return c.cg.Remove(2 * time.Second)
}

// Adopt is a Container for a running process the caller did not create
// but is the parent of (CRIU restored it): pid is its init, in the spec's
// cgroup. It is started already.
func Adopt(pid int, spec *specs.Spec) (*Container, error) {
	cg, err := openCgroup(spec)
	if err != nil {
		return nil, err
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	return &Container{pid: pid, proc: p, cg: cg}, nil
}
