package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/containerinit"
	"github.com/berth-dev/berth/runtime/crilog"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/safefile"
	"github.com/berth-dev/berth/runtime/shim"
)

// The container ops' first step: berthd asks for a container process,
// set up and held before execve, with its output going to the CRI log.

func handleCreate(s *server, raw json.RawMessage) (any, error) {
	var a shim.CreateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if !validID(a.ID) {
		return nil, fmt.Errorf("bad container id %q: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(a.BundleDir) || !filepath.IsAbs(a.StateDir) || (a.LogPath != "" && !filepath.IsAbs(a.LogPath)) || (a.LogDir != "" && !filepath.IsAbs(a.LogDir)) {
		return nil, fmt.Errorf("container %s: bundle, state dir, log dir and log path must be absolute: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	containers.mu.Lock()
	if containers.closed {
		containers.mu.Unlock()
		return nil, fmt.Errorf("shim is shutting down: %w", errdefs.ErrFailedPrecondition)
	}
	if _, ok := containers.byID[a.ID]; ok {
		containers.mu.Unlock()
		return nil, fmt.Errorf("container %s: %w", a.ID, errdefs.ErrAlreadyExists)
	}
	containers.byID[a.ID] = nil
	created := make(chan struct{})
	containers.pending[a.ID] = created
	containers.creating.Add(1)
	containers.mu.Unlock()
	defer containers.creating.Done()

	c, err := createContainer(s, a)
	containers.mu.Lock()
	defer containers.mu.Unlock()
	delete(containers.pending, a.ID)
	close(created)
	if err != nil {
		delete(containers.byID, a.ID)
		return nil, err
	}
	containers.byID[a.ID] = c
	return c.state, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 || spec.Linux == nil || spec.Root == nil {
		return nil, fmt.Errorf("spec lacks process args, root or linux section: %w", errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// createContainer sets the process up, held before execve, in the cgroup
// berthd made for it; on failure no process of it is left (the cgroup is
// berthd's to remove).
func createContainer(s *server, a shim.CreateArgs) (_ *container, retErr error) {
	spec, err := readSpec(a.BundleDir)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	stateDir, err := safefile.OpenDir(a.StateDir)
	if err != nil {
		return nil, fmt.Errorf("container %s: state dir: %v: %w", a.ID, err, errdefs.ErrInvalidArgument)
	}
	// A record left from an earlier life of the dir would read as this
	// container's end.
	err = stateDir.Remove(shim.ExitFile)
	stateDir.Close()
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	c := &container{id: a.ID, stateDir: a.StateDir, bundleDir: a.BundleDir, spec: spec, done: make(chan struct{})}
	var closeOnErr, childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
		if retErr != nil {
			for _, f := range closeOnErr {
				f.Close()
			}
			if c.log != nil {
				// Removes the log file if this create made it.
				if err := c.log.Discard(); err != nil {
					log.Printf("container %s: undo create: %v", a.ID, err)
				}
			}
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err != nil {
			return nil, nil, fmt.Errorf("container %s: pipe: %w", a.ID, err)
		}
		return r, w, nil
	}

	if a.LogPath != "" {
		dir, name, err := logLocation(a)
		if err != nil {
			return nil, err
		}
		if c.log, err = crilog.Open(dir, name); err != nil {
			return nil, fmt.Errorf("container %s: %w", a.ID, withCode(err, errdefs.ErrInvalidArgument))
		}
	}
	opts := process.CreateOpts{InitPath: initPath, BundleDir: a.BundleDir, Spec: spec}
	tty := spec.Process.Terminal
	if !tty {
		// The output is piped even without a log: attach follows it.
		{
			outR, outW, err := pipe()
			if err != nil {
				return nil, err
			}
			closeOnErr, childEnds = append(closeOnErr, outR), append(childEnds, outW)
			errR, errW, err := pipe()
			if err != nil {
				return nil, err
			}
			closeOnErr, childEnds = append(closeOnErr, errR), append(childEnds, errW)
			opts.Stdout, opts.Stderr = outW, errW
			c.outputs = []*os.File{outR, errR}
		}
		if a.Stdin {
			inR, inW, err := pipe()
			if err != nil {
				return nil, err
			}
			closeOnErr, childEnds = append(closeOnErr, inW), append(childEnds, inR)
			opts.Stdin, c.stdin = inR, inW
		}
	}
	if a.RestoreFrom != "" {
		return c.awaitRestore(a, opts, &childEnds)
	}
	nodeHooksRan := false
	opts.NodeHooks = func(pid int) error {
		nodeHooksRan = true
		return containerinit.RunNodeHooks(spec, a.ID, a.BundleDir, pid, s.waitHook)
	}
	proc, err := process.Create(opts)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	c.proc = proc
	exited := s.reaper.watchLive(proc.Pid())
	if tty && proc.Console != nil {
		console, err := pollable(proc.Console)
		if err != nil {
			// The process is ours now: undo it as a whole.
			_ = proc.Destroy()
			<-exited
			return nil, fmt.Errorf("container %s: console: %w", a.ID, err)
		}
		proc.Console = console
		c.outputs = []*os.File{console}
		c.stdin = console
	}
	streams := []string{"stdout", "stderr"}
	for i, r := range c.outputs {
		c.copiers.Add(1)
		go c.copyOutput(streams[i], r)
	}
	c.state = shim.ContainerState{ID: a.ID, Pid: proc.Pid(), Status: shim.StatusCreated, NodeHooksRan: nodeHooksRan}
	go c.reap(exited)
	return c, nil
}

// logLocation splits the log path into the directory it must stay below
// (the pod's log directory) and the path below it.
func logLocation(a shim.CreateArgs) (dir, name string, err error) {
	dir = a.LogDir
	if dir == "" {
		dir = filepath.Dir(a.LogPath)
	}
	name, err = filepath.Rel(dir, a.LogPath)
	if err != nil || !filepath.IsLocal(name) {
		return "", "", fmt.Errorf("container %s: log path %s is not below the log directory %s: %w", a.ID, a.LogPath, dir, errdefs.ErrInvalidArgument)
	}
	return dir, name, nil
}

// withCode gives a path safefile refused the code of the caller's view:
// a bad argument when a request named it, a failed precondition when the
// node changed under a container.
func withCode(err, code error) error {
	if errors.Is(err, safefile.ErrUnsafe) {
		return fmt.Errorf("%w: %w", err, code)
	}
	return err
}

// pollable gives the pty master (received blocking from the init) a
// non-blocking twin so that reads can be given a deadline.
func pollable(f *os.File) (*os.File, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := sc.Control(func(old uintptr) { fd, derr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f.Close()
	return os.NewFile(uintptr(fd), "console"), nil
}

// waitHook waits for a hook the shim started (its reaper reaps every
// child), killing it past its timeout.
func (s *server) waitHook(p *os.Process, timeout time.Duration) error {
	exited := s.reaper.watchLive(p.Pid)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ws := <-exited:
		_ = p.Release()
		if ws.Exited() && ws.ExitStatus() == 0 {
			return nil
		}
		return errors.New(describe(ws))
	case <-t.C:
		_ = p.Kill()
		<-exited
		_ = p.Release()
		return fmt.Errorf("timed out after %s", timeout)
	}
}
