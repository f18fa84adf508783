package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/shim"
)

func init() { streamHandlers[shim.OpExecSyncStream] = handleExecSync }

// execOutputCap bounds what is sent of each stream of an exec-sync when
// berthd names no bound; the rest is read and dropped so the command
// never blocks on a full pipe.
const execOutputCap = 16 << 20

// execDrainGrace is how long output is still read after the command
// exited: a background process it left may hold the pipes open.
const execDrainGrace = time.Second

// execSetupTimeout bounds the setup of the command before it runs,
// whatever the command's own timeout.
const execSetupTimeout = 10 * time.Second

// handleExecSync runs a command as the container's process runs (its
// namespaces, cgroup, user, capabilities, no_new_privs, env and cwd) and
// streams its output as it comes: nothing of it is held here.
func handleExecSync(s *server, conn net.Conn, raw json.RawMessage) error {
	a, c, err := containerOf[shim.ExecSyncArgs](raw)
	if err != nil {
		return s.answer(conn, nil, err)
	}
	if len(a.Cmd) == 0 || a.Cmd[0] == "" || a.Timeout < 0 || a.MaxOutput < 0 {
		return s.answer(conn, nil, fmt.Errorf("exec in %s: a command is needed, and the timeout and output bound must not be negative: %w", a.ID, errdefs.ErrInvalidArgument))
	}
	st := c.snapshot()
	if st.Status != shim.StatusRunning {
		return s.answer(conn, nil, fmt.Errorf("exec in %s: container is %s: %w", a.ID, st.Status, errdefs.ErrFailedPrecondition))
	}
	limit := int64(a.MaxOutput)
	if limit == 0 {
		limit = execOutputCap
	}
	started := time.Now()
	x, outputs, exited, err := c.startExecSync(s, st.Pid, a.Cmd)
	if err != nil {
		return s.answer(conn, nil, fmt.Errorf("exec in %s: %w", a.ID, err))
	}
	defer func() {
		for _, r := range outputs {
			r.Close()
		}
	}()
	if err := s.answer(conn, struct{}{}, nil); err != nil {
		killExec(x, exited)
		return err
	}
	fw := shim.NewFrameWriter(conn)
	var copiers sync.WaitGroup
	written := make([]*capWriter, len(outputs))
	for i, typ := range []byte{shim.FrameStdout, shim.FrameStderr} {
		written[i] = &capWriter{w: fw.Stream(typ), left: limit}
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			_, _ = io.Copy(written[i], outputs[i])
		}()
	}
	// berthd sends nothing more; its closing the connection (its caller
	// gave up) ends the command.
	gone := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, conn); close(gone) }()

	var expired <-chan time.Time
	if a.Timeout > 0 {
		// A setup slower than the timeout (a loaded node) leaves the
		// command no time: it is a timeout, not an error.
		t := time.NewTimer(a.Timeout - time.Since(started))
		defer t.Stop()
		expired = t.C
	}
	var end shim.ExecSyncEnd
	var ws unix.WaitStatus
	select {
	case ws = <-exited:
	case <-expired:
		ws = killExec(x, exited)
		end.TimedOut = true
	case <-gone:
		killExec(x, exited)
		drainFiles(&copiers, outputs, execDrainGrace)
		return nil
	}
	drainFiles(&copiers, outputs, execDrainGrace)
	end.ExitCode = exitCode(ws)
	end.StdoutBytes, end.StderrBytes = written[0].total, written[1].total
	b, err := json.Marshal(end)
	if err != nil {
		return err
	}
	return fw.Frame(shim.FrameResult, b)
}

// startExecSync sets up and releases cmd with its stdout and stderr on
// pipes; on failure nothing of it is left.
func (c *container) startExecSync(s *server, pid int, cmd []string) (*process.Container, []*os.File, <-chan unix.WaitStatus, error) {
	p := *c.spec.Process
	p.Args, p.Terminal, p.ConsoleSize = cmd, false, nil
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, err
	}
	x, err := process.Exec(process.ExecOpts{
		InitPath: initPath, PlanPath: planPath(), Pid: pid, Spec: c.spec, BundleDir: c.bundleDir, Process: &p,
		Stdout: outW, Stderr: errW, Timeout: execSetupTimeout, Now: true, Files: &c.execFiles,
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, nil, nil, err
	}
	exited := s.reaper.watchLive(x.Pid())
	if err := x.Start(); err != nil {
		_ = x.Destroy()
		<-exited
		outR.Close()
		errR.Close()
		return nil, nil, nil, err
	}
	return x, []*os.File{outR, errR}, exited, nil
}

// killExec ends the command (its session, children included: the init
// made it a session leader) and reaps it.
func killExec(x *process.Container, exited <-chan unix.WaitStatus) unix.WaitStatus {
	_ = unix.Kill(-x.Pid(), unix.SIGKILL)
	_ = x.Destroy()
	return <-exited
}

// capWriter passes on the first left bytes written to it and drops the
// rest, counting all; a failed write (berthd went away) drops the rest
// too, so the command's pipe is always drained.
type capWriter struct {
	w     io.Writer
	left  int64
	total int64
}

func (c *capWriter) Write(p []byte) (int, error) {
	c.total += int64(len(p))
	if n := min(int64(len(p)), c.left); n > 0 {
		if _, err := c.w.Write(p[:n]); err != nil {
			c.left = 0
		} else {
			c.left -= n
		}
	}
	return len(p), nil
}
