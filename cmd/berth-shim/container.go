package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/crilog"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/shim"
)

// The container ops (see runtime/shim/container.go): the shim creates each
// container process, is its parent and reaper, copies its output into the
// CRI log and records how it ended.

func init() {
	handlers[shim.OpCreate] = handleCreate
	handlers[shim.OpStart] = handleStart
	handlers[shim.OpState] = handleState
	handlers[shim.OpKill] = handleKill
	handlers[shim.OpDelete] = handleDelete
	handlers[shim.OpReopenLog] = handleReopenLog
	shutdownHooks = append(shutdownHooks, stopContainers)
}

// initPath runs this very binary (its init role) even if the file on disk
// was replaced by an upgrade since the shim started.
const initPath = "/proc/self/exe"

// drainTimeout bounds the wait for a container's output after its last
// process ended: a pipe end that leaked elsewhere must not hold the exit.
const drainTimeout = 2 * time.Second

// container is one container of the pod.
type container struct {
	id       string
	stateDir string
	spec     *specs.Spec
	proc     *process.Container
	log      *crilog.File // nil: output discarded
	// stdin is the write end of the process's stdin pipe (or the console
	// with a terminal), kept for attach.
	stdin   *os.File
	outputs []*os.File // read ends being copied
	copiers sync.WaitGroup
	// done is closed once the process was reaped and its exit recorded.
	done chan struct{}
	// startMu is held while the process is being released, so that the
	// exit record sees the final StartedAt.
	startMu sync.Mutex
	// deleteMu serialises deletes of the container.
	deleteMu sync.Mutex

	state shim.ContainerState // guarded by containers.mu
}

// containers are the pod's containers by id. A nil value reserves an id
// whose create is under way.
var containers = struct {
	mu   sync.Mutex
	byID map[string]*container
	// closed refuses new creates once the shim shuts down; creating
	// counts those under way, which the shutdown waits for.
	closed   bool
	creating sync.WaitGroup
	// pending holds, per id being created, a channel closed when the
	// create ends, for a delete that comes meanwhile.
	pending map[string]chan struct{}
}{byID: map[string]*container{}, pending: map[string]chan struct{}{}}

func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return fmt.Errorf("missing arguments: %w", errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode arguments: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// lookup finds a created container.
func lookup(id string) (*container, error) {
	containers.mu.Lock()
	defer containers.mu.Unlock()
	c := containers.byID[id]
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (c *container) snapshot() shim.ContainerState {
	containers.mu.Lock()
	defer containers.mu.Unlock()
	return c.state
}

func validID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsAny(id, "/\x00") && id != "." && id != ".."
}

func handleCreate(s *server, raw json.RawMessage) (any, error) {
	var a shim.CreateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if !validID(a.ID) {
		return nil, fmt.Errorf("bad container id %q: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(a.BundleDir) || !filepath.IsAbs(a.StateDir) || (a.LogPath != "" && !filepath.IsAbs(a.LogPath)) {
		return nil, fmt.Errorf("container %s: bundle, state dir and log path must be absolute: %w", a.ID, errdefs.ErrInvalidArgument)
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
	if st, err := os.Stat(a.StateDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("container %s: state dir %s is not a directory: %w", a.ID, a.StateDir, errdefs.ErrInvalidArgument)
	}
	// A record left from an earlier life of the dir would read as this
	// container's end.
	if err := os.Remove(filepath.Join(a.StateDir, shim.ExitFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	c := &container{id: a.ID, stateDir: a.StateDir, spec: spec, done: make(chan struct{})}
	var closeOnErr, childEnds []*os.File
	newLog := false // a failed create removes the log file it made
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
		if retErr != nil {
			for _, f := range closeOnErr {
				f.Close()
			}
			if c.log != nil {
				c.log.Close()
				if newLog {
					_ = os.Remove(a.LogPath)
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
		_, err := os.Stat(a.LogPath)
		newLog = errors.Is(err, os.ErrNotExist)
		if err := os.MkdirAll(filepath.Dir(a.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("container %s: log dir: %w", a.ID, err)
		}
		if c.log, err = crilog.Open(a.LogPath); err != nil {
			return nil, fmt.Errorf("container %s: %w", a.ID, err)
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
	c.state = shim.ContainerState{ID: a.ID, Pid: proc.Pid(), Status: shim.StatusCreated}
	go c.reap(exited)
	return c, nil
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

// copyOutput copies one stream into the log until the stream ends. A log
// that cannot be written (a reopen failed) loses lines, not the stream:
// copying goes on, so the container never blocks on a full pipe and the
// log resumes once a later reopen succeeds.
func (c *container) copyOutput(stream string, r *os.File) {
	defer c.copiers.Done()
	// Attached clients (stream.go) get a copy of what the log gets.
	src := &readErr{r: attachTee(c, stream, r)}
	for c.log != nil && src.err == nil {
		if err := c.log.Copy(stream, src, 0); err == nil {
			return
		}
	}
	_, _ = io.Copy(io.Discard, src)
}

// readErr remembers its reader's error, to tell the stream's end from a
// failed write of the log.
type readErr struct {
	r   io.Reader
	err error
}

func (x *readErr) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	if err != nil {
		x.err = err
	}
	return n, err
}

// reap waits for the container's init to end and records the end.
func (c *container) reap(exited <-chan unix.WaitStatus) {
	ws := <-exited
	finished := time.Now().UTC()
	// The OOM counter goes with the cgroup: read it first.
	oom := c.proc.OOMKilled()
	// The container is over when its init ends; in a PID namespace shared
	// with the pod its other processes would outlive it.
	if cg := c.proc.Cgroup(); cg != nil {
		if pids, err := cg.Pids(); err == nil && len(pids) > 0 {
			if err := cg.KillAll(); err != nil {
				log.Printf("container %s: kill leftover processes: %v", c.id, err)
			}
		}
	}
	c.drain()
	if c.log != nil {
		_ = c.log.Close()
	}
	// A start under way decides StartedAt.
	c.startMu.Lock()
	defer c.startMu.Unlock()
	containers.mu.Lock()
	rec := shim.ExitRecord{Pid: c.state.Pid, StartedAt: c.state.StartedAt, FinishedAt: finished, ExitCode: exitCode(ws), OOMKilled: oom}
	containers.mu.Unlock()
	// The record is on disk before anyone learns of the exit: berthd may
	// read it as soon as the state says exited.
	if err := writeExitRecord(c.stateDir, rec); err != nil {
		log.Printf("container %s: %v", c.id, err)
	}
	containers.mu.Lock()
	c.state.Status = shim.StatusExited
	c.state.FinishedAt = finished
	c.state.ExitCode = rec.ExitCode
	c.state.OOMKilled = oom
	containers.mu.Unlock()
	close(c.done)
}

// drain waits for the output copiers; past drainTimeout (a descendant that
// left the cgroup still holds a pipe) their reads are cut short.
func (c *container) drain() {
	copied := make(chan struct{})
	go func() { c.copiers.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(drainTimeout):
		for _, r := range c.outputs {
			_ = r.SetReadDeadline(time.Unix(1, 0))
		}
		<-copied
	}
	for _, r := range c.outputs {
		if r != c.stdin {
			r.Close()
		}
	}
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// writeExitRecord writes ExitFile so that it survives a crash whole or not
// at all.
func writeExitRecord(dir string, rec shim.ExitRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".exit-*.tmp")
	if err != nil {
		return fmt.Errorf("write exit record: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, shim.ExitFile))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write exit record: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func handleStart(_ *server, raw json.RawMessage) (any, error) {
	var a shim.IDArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	c, err := lookup(a.ID)
	if err != nil {
		return nil, err
	}
	c.startMu.Lock()
	defer c.startMu.Unlock()
	containers.mu.Lock()
	if c.state.Status != shim.StatusCreated {
		st := c.state.Status
		containers.mu.Unlock()
		return nil, fmt.Errorf("container %s is %s, not created: %w", a.ID, st, errdefs.ErrFailedPrecondition)
	}
	c.state.StartedAt = time.Now().UTC()
	containers.mu.Unlock()
	err = c.proc.Start()
	containers.mu.Lock()
	defer containers.mu.Unlock()
	if err != nil {
		c.state.StartedAt = time.Time{}
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	if c.state.Status == shim.StatusCreated {
		c.state.Status = shim.StatusRunning
	}
	return c.state, nil
}

func handleState(_ *server, raw json.RawMessage) (any, error) {
	var a shim.IDArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	c, err := lookup(a.ID)
	if err != nil {
		return nil, err
	}
	return c.snapshot(), nil
}

func handleKill(_ *server, raw json.RawMessage) (any, error) {
	var a shim.KillArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if a.Signal <= 0 || a.Signal > 64 {
		return nil, fmt.Errorf("bad signal %d: %w", a.Signal, errdefs.ErrInvalidArgument)
	}
	c, err := lookup(a.ID)
	if err != nil {
		return nil, err
	}
	if c.snapshot().Status == shim.StatusExited {
		return struct{}{}, nil
	}
	if err := c.kill(syscall.Signal(a.Signal), a.All); err != nil {
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	return struct{}{}, nil
}

// kill signals the init, or every process of the container's cgroup.
func (c *container) kill(sig syscall.Signal, all bool) error {
	cg := c.proc.Cgroup()
	if !all || cg == nil {
		if err := c.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		return nil
	}
	if sig == unix.SIGKILL {
		// Frozen meanwhile: nothing forks past it.
		return cg.KillAll()
	}
	pids, err := cg.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d: %w", pid, err)
		}
	}
	return nil
}

// deleteWait bounds the wait for a killed container's reap.
const deleteWait = 10 * time.Second

func handleDelete(_ *server, raw json.RawMessage) (any, error) {
	var a shim.IDArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	containers.mu.Lock()
	c := containers.byID[a.ID]
	created := containers.pending[a.ID]
	containers.mu.Unlock()
	if created != nil {
		// berthd undoing a create its caller gave up on: the delete
		// applies to what the create makes.
		select {
		case <-created:
		case <-time.After(deleteWait):
			return nil, fmt.Errorf("container %s is still being created: %w", a.ID, errdefs.ErrFailedPrecondition)
		}
		containers.mu.Lock()
		c = containers.byID[a.ID]
		containers.mu.Unlock()
	}
	if c == nil {
		return struct{}{}, nil
	}
	if err := c.destroy(); err != nil {
		return nil, fmt.Errorf("delete container %s: %w", a.ID, err)
	}
	containers.mu.Lock()
	if containers.byID[a.ID] == c {
		delete(containers.byID, a.ID)
	}
	containers.mu.Unlock()
	return struct{}{}, nil
}

// destroy kills the container if it runs, waits for its reap and removes
// its cgroup (berthd made it; the shim removes it once the exit is
// recorded, as the OOM count goes with it). Safe to repeat.
func (c *container) destroy() error {
	c.deleteMu.Lock()
	defer c.deleteMu.Unlock()
	if err := c.stop(deleteWait); err != nil {
		return err
	}
	if err := c.proc.Destroy(); err != nil {
		return err
	}
	if c.stdin != nil {
		c.stdin.Close()
	}
	if c.log != nil {
		_ = c.log.Close()
	}
	return nil
}

// stop kills every process of the container and waits until the exit is
// recorded.
func (c *container) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	if err := c.kill(unix.SIGKILL, true); err != nil {
		return err
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("process %d did not end within %v after SIGKILL", c.proc.Pid(), timeout)
	}
}

// stopContainers is the shutdown hook: every container is killed and its
// end recorded before the shim goes; their cgroups go too, since no one
// else would remove them.
func stopContainers(*server) {
	containers.mu.Lock()
	containers.closed = true
	containers.mu.Unlock()
	containers.creating.Wait()
	containers.mu.Lock()
	all := make([]*container, 0, len(containers.byID))
	for _, c := range containers.byID {
		if c != nil {
			all = append(all, c)
		}
	}
	containers.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.destroy(); err != nil {
				log.Printf("shutdown: container %s: %v", c.id, err)
			}
		}()
	}
	wg.Wait()
}

func handleReopenLog(_ *server, raw json.RawMessage) (any, error) {
	var a shim.IDArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	c, err := lookup(a.ID)
	if err != nil {
		return nil, err
	}
	if c.log == nil {
		return nil, fmt.Errorf("container %s has no log: %w", a.ID, errdefs.ErrFailedPrecondition)
	}
	if c.snapshot().Status != shim.StatusRunning {
		return nil, fmt.Errorf("container %s is not running: %w", a.ID, errdefs.ErrFailedPrecondition)
	}
	if err := c.log.Reopen(); err != nil {
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	return struct{}{}, nil
}

// watchLive is watch for a pid that was just created and not reaped yet.
// The reaper keeps statuses nobody watched (e.g. the short-lived process
// that forks a container's init into its PID namespace); one kept for an
// earlier process that had this pid must not be taken for this one's.
func (r *reaper) watchLive(pid int) <-chan unix.WaitStatus {
	r.mu.Lock()
	if _, ok := r.exited[pid]; ok {
		// While /proc/<pid> exists the process was not reaped, so the
		// status kept is an earlier one's.
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			delete(r.exited, pid)
		}
	}
	r.mu.Unlock()
	return r.watch(pid)
}
