package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
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
	r := &execRun{conn: conn, outputs: outputs, exited: exited, kill: func() unix.WaitStatus { return killExec(x, exited) }}
	for i := range r.written {
		r.written[i] = &capWriter{left: limit}
	}
	if a.Timeout > 0 {
		r.deadline = started.Add(a.Timeout)
	}
	return r.finish()
}

// execRun is an ExecSync's command under way, from its Response on: its
// output being sent, its exit awaited.
type execRun struct {
	conn    net.Conn
	outputs []*os.File // stdout, stderr; nil: at its end already
	written [2]*capWriter
	exited  <-chan unix.WaitStatus
	kill    func() unix.WaitStatus // ends the command and reaps it
	// deadline is when the command times out (zero: never); timedOut, that
	// it did already (berth-mon killed it).
	deadline time.Time
	timedOut bool
}

// finish sends the command's output until it exited (or timed out, or
// berthd went away) and its result.
func (r *execRun) finish() error {
	fw := shim.NewFrameWriter(r.conn)
	var copiers sync.WaitGroup
	var open []*os.File
	for i, typ := range []byte{shim.FrameStdout, shim.FrameStderr} {
		r.written[i].w = fw.Stream(typ)
		if r.outputs[i] == nil {
			continue
		}
		open = append(open, r.outputs[i])
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			_, _ = io.Copy(r.written[i], r.outputs[i])
		}()
	}
	// berthd sends nothing more; its closing the connection (its caller
	// gave up) ends the command.
	gone := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, r.conn); close(gone) }()

	var expired <-chan time.Time
	if !r.deadline.IsZero() && !r.timedOut {
		// A setup slower than the timeout (a loaded node) leaves the
		// command no time: it is a timeout, not an error.
		t := time.NewTimer(time.Until(r.deadline))
		defer t.Stop()
		expired = t.C
	}
	end := shim.ExecSyncEnd{TimedOut: r.timedOut}
	var ws unix.WaitStatus
	select {
	case ws = <-r.exited:
	case <-expired:
		ws = r.kill()
		end.TimedOut = true
	case <-gone:
		r.kill()
		drainFiles(&copiers, open, execDrainGrace)
		return nil
	}
	drainFiles(&copiers, open, execDrainGrace)
	end.ExitCode = exitCode(ws)
	end.StdoutBytes, end.StderrBytes = r.written[0].total, r.written[1].total
	b, err := json.Marshal(end)
	if err != nil {
		return err
	}
	return fw.Frame(shim.FrameResult, b)
}

// resumeExecSync finishes an ExecSync berth-mon had under way when it
// exec'd us back: the same connection, the command's output pipes and what
// was sent of them, its exit if berth-mon reaped it.
func (s *server) resumeExecSync(p parsedExec) {
	outputs := []*os.File{adoptFile(p.out[0], "exec stdout"), adoptFile(p.out[1], "exec stderr")}
	defer func() {
		for _, f := range outputs {
			if f != nil {
				f.Close()
			}
		}
	}()
	var exited <-chan unix.WaitStatus
	if p.status >= 0 {
		ch := make(chan unix.WaitStatus, 1)
		ch <- unix.WaitStatus(p.status)
		exited = ch
	} else {
		// Not reaped by berth-mon: ours now, kept by the reaper if it
		// exited before this watch.
		exited = s.reaper.watch(p.pid)
	}
	conn, err := adoptConn(parsedConn{fd: p.conn})
	if err != nil {
		log.Printf("resume exec %d: %v", p.pid, err)
		_ = unix.Kill(-p.pid, unix.SIGKILL)
		return
	}
	defer conn.Close()
	r := &execRun{conn: conn, outputs: outputs, exited: exited, timedOut: p.timedOut,
		kill: func() unix.WaitStatus {
			_ = unix.Kill(-p.pid, unix.SIGKILL)
			_ = unix.Kill(p.pid, unix.SIGKILL)
			return <-exited
		}}
	for i := range r.written {
		r.written[i] = &capWriter{left: p.left[i], total: p.total[i]}
	}
	if p.timeoutLeft >= 0 {
		r.deadline = time.Now().Add(time.Duration(p.timeoutLeft))
	}
	if err := r.finish(); err != nil {
		log.Printf("resume exec %d: %v", p.pid, err)
	}
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
