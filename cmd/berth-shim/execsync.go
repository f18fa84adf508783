package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/shim"
)

func init() { handlers[shim.OpExecSync] = handleExecSync }

// execOutputCap bounds each stream an exec-sync returns; the rest is read
// and dropped so the command never blocks on a full pipe.
const execOutputCap = 16 << 20

// execDrainGrace is how long output is still read after the command
// exited: a background process it left may hold the pipes open.
const execDrainGrace = time.Second

// execSetupTimeout bounds the setup of the command before it runs,
// whatever the command's own timeout.
const execSetupTimeout = 10 * time.Second

func handleExecSync(s *server, raw json.RawMessage) (any, error) {
	a, c, err := containerOf[shim.ExecSyncArgs](raw)
	if err != nil {
		return nil, err
	}
	if len(a.Cmd) == 0 || a.Cmd[0] == "" || a.Timeout < 0 {
		return nil, fmt.Errorf("exec in %s: a command is needed and the timeout must not be negative: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	st := c.snapshot()
	if st.Status != shim.StatusRunning {
		return nil, fmt.Errorf("exec in %s: container is %s: %w", a.ID, st.Status, errdefs.ErrFailedPrecondition)
	}
	res, err := c.execSync(s, st.Pid, a.Cmd, a.Timeout)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", a.ID, err)
	}
	return res, nil
}

// execSync runs cmd as the container's process runs (its namespaces,
// cgroup, user, capabilities, no_new_privs, env and cwd) and collects its
// output.
func (c *container) execSync(s *server, pid int, cmd []string, timeout time.Duration) (*shim.ExecSyncResult, error) {
	p := *c.spec.Process
	p.Args, p.Terminal, p.ConsoleSize = cmd, false, nil
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	started := time.Now()
	x, err := process.Exec(process.ExecOpts{
		InitPath: initPath, Pid: pid, Spec: c.spec, Process: &p,
		Stdout: outW, Stderr: errW, Timeout: execSetupTimeout,
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	exited := s.reaper.watchLive(x.Pid())
	var stdout, stderr cappedBuffer
	var copiers sync.WaitGroup
	for _, o := range []struct {
		r *os.File
		b *cappedBuffer
	}{{outR, &stdout}, {errR, &stderr}} {
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			_, _ = io.Copy(o.b, o.r)
		}()
	}
	defer func() {
		outR.Close()
		errR.Close()
	}()
	if err := x.Start(); err != nil {
		_ = x.Destroy()
		<-exited
		return nil, err
	}
	res := &shim.ExecSyncResult{}
	var ws unix.WaitStatus
	var expired <-chan time.Time
	if timeout > 0 {
		// A setup slower than the timeout (a loaded node) leaves the
		// command no time: it is a timeout, not an error.
		t := time.NewTimer(timeout - time.Since(started))
		defer t.Stop()
		expired = t.C
	}
	select {
	case ws = <-exited:
	case <-expired:
		// The command runs in a session of its own (the init's setsid):
		// its process group goes, children included.
		_ = unix.Kill(-x.Pid(), unix.SIGKILL)
		_ = x.Destroy()
		ws = <-exited
		res.TimedOut = true
	}
	drained := make(chan struct{})
	go func() { copiers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(execDrainGrace):
		_ = outR.SetReadDeadline(time.Unix(1, 0))
		_ = errR.SetReadDeadline(time.Unix(1, 0))
		<-drained
	}
	res.ExitCode = exitCode(ws)
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	return res, nil
}

// cappedBuffer keeps the first execOutputCap bytes written to it.
type cappedBuffer struct {
	buf []byte
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := execOutputCap - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte { return b.buf }
