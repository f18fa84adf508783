package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/shim"
)

// Exit reasons, as the kubelet knows them.
const (
	ReasonCompleted  = "Completed"
	ReasonError      = "Error"
	ReasonOOMKilled  = "OOMKilled"
	ReasonStartError = "StartError"
)

// stateTimeout bounds one state query to a shim.
const stateTimeout = 5 * time.Second

// lostExitCode is reported when a container ended without an exit record
// (its shim died, or the node rebooted).
const lostExitCode = 255

// exitReason names how a process ended.
func exitReason(code int, oom bool) string {
	switch {
	case oom:
		return ReasonOOMKilled
	case code == 0:
		return ReasonCompleted
	default:
		return ReasonError
	}
}

// Start releases a created container's process into its command.
func (m *Manager) Start(ctx context.Context, id string) error {
	rec, unlock, err := m.locked(id)
	if err != nil {
		return err
	}
	defer unlock()
	id = rec.ID
	if rec.Status.State != Created {
		return fmt.Errorf("start container %s: it is %s, not created: %w", id, rec.Status.State, errdefs.ErrFailedPrecondition)
	}
	var st shim.ContainerState
	if err := shim.Connect(rec.ShimDir).Call(ctx, shim.OpStart, shim.IDArgs{ID: id}, &st); err != nil {
		// The process is gone or unusable: record that it could not start,
		// so that the kubelet sees an exited container rather than one
		// stuck in created.
		msg := err.Error()
		_, _ = m.store.Update(id, func(r *Record) error {
			r.Status.State = Exited
			r.Status.FinishedAt = time.Now()
			if r.Status.ExitCode == 0 {
				r.Status.ExitCode = 128
			}
			r.Status.Reason, r.Status.Message = ReasonStartError, msg
			return nil
		})
		return fmt.Errorf("start container %s: %w", id, err)
	}
	_, err = m.store.Update(id, func(r *Record) error {
		applyState(r, &st)
		if r.Status.State == Created {
			r.Status.State = Running
		}
		if r.Status.StartedAt.IsZero() {
			r.Status.StartedAt = time.Now()
		}
		return nil
	})
	if err != nil {
		return err
	}
	klog.V(2).InfoS("Container started", "container", id, "pid", st.Pid)
	m.laterHooks(ctx, rec, "poststart", st.Pid)
	return nil
}

// applyState copies what the shim reports into a record.
func applyState(r *Record, st *shim.ContainerState) {
	if r.Status.State == Exited {
		return // an exit is final; a state read before it is stale
	}
	if st.Pid != 0 {
		r.Status.Pid = st.Pid
	}
	if !st.StartedAt.IsZero() {
		r.Status.StartedAt = st.StartedAt
	}
	switch st.Status {
	case shim.StatusRunning:
		r.Status.State = Running
	case shim.StatusExited:
		setExited(r, st.FinishedAt, st.ExitCode, st.OOMKilled)
	}
}

func setExited(r *Record, at time.Time, code int, oom bool) {
	r.Status.State = Exited
	if at.IsZero() {
		at = time.Now()
	}
	r.Status.FinishedAt = at
	r.Status.ExitCode = int32(code)
	if r.Status.Reason != ReasonStartError {
		r.Status.Reason = exitReason(code, oom)
	}
}

// setLost marks a container whose end nobody recorded.
func setLost(r *Record, why string) {
	r.Status.State = Exited
	r.Status.FinishedAt = time.Now()
	r.Status.ExitCode = lostExitCode
	r.Status.Reason = ReasonError
	r.Status.Message = why
}

// readExit reads the exit record the shim left in the container's state dir.
func readExit(stateDir string) (*shim.ExitRecord, error) {
	data, err := os.ReadFile(stateDir + "/" + shim.ExitFile)
	if err != nil {
		return nil, err
	}
	var x shim.ExitRecord
	if err := json.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("decode exit record in %s: %w", stateDir, err)
	}
	return &x, nil
}

// refresh brings a live record up to date and persists a change. The exit
// record is read first (cheap, and there even when the shim is gone); deep
// asks the shim too, which a process that is still running needs to be
// told from a shim that died.
func (m *Manager) refresh(ctx context.Context, rec *Record, deep bool) (*Record, error) {
	if rec.Status.State == Exited || m.beingMade(rec.ID) {
		// A container being made has no exit yet, and its shim does not
		// know it yet.
		return rec, nil
	}
	if x, err := readExit(rec.StateDir); err == nil {
		return m.store.Update(rec.ID, func(r *Record) error {
			if x.Pid != 0 {
				r.Status.Pid = x.Pid
			}
			if !x.StartedAt.IsZero() {
				r.Status.StartedAt = x.StartedAt
			}
			setExited(r, x.FinishedAt, x.ExitCode, x.OOMKilled)
			return nil
		})
	}
	if !deep {
		return rec, nil
	}
	var st shim.ContainerState
	// A hung shim must not hold a status (or berthd's start) for long.
	sctx, cancel := context.WithTimeout(ctx, stateTimeout)
	err := shim.Connect(rec.ShimDir).Call(sctx, shim.OpState, shim.IDArgs{ID: rec.ID}, &st)
	cancel()
	switch {
	case err == nil:
		if st.Status == shim.StatusExited || (st.Pid != 0 && st.Pid != rec.Status.Pid) || (st.Status == shim.StatusRunning && rec.Status.State != Running) {
			return m.store.Update(rec.ID, func(r *Record) error { applyState(r, &st); return nil })
		}
		return rec, nil
	case errors.Is(err, errdefs.ErrNotFound):
		return m.store.Update(rec.ID, func(r *Record) error {
			setLost(r, "the pod's shim does not know the container; its exit was not recorded")
			return nil
		})
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return rec, err
	default:
		// The shim may have written the exit record while shutting down.
		if x, xerr := readExit(rec.StateDir); xerr == nil {
			return m.store.Update(rec.ID, func(r *Record) error {
				setExited(r, x.FinishedAt, x.ExitCode, x.OOMKilled)
				return nil
			})
		}
		if !shimGone(rec.ShimDir) {
			return rec, err
		}
		// The process may outlive its shim: nothing would ever reap or
		// report it, so end it.
		killCgroup(rec.Cgroup)
		return m.store.Update(rec.ID, func(r *Record) error {
			setLost(r, "the pod's shim is gone; the container's exit was not recorded")
			return nil
		})
	}
}

// shimGone pings the shim once more, to tell a dead shim from a slow one.
// Only a socket that is missing or that nobody listens on is death: a ping
// that times out on a loaded node is a slow shim, and taking it for dead
// would record a running container's exit as lost (and kill it).
func shimGone(dir string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := shim.Connect(dir).Ping(ctx)
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT)
}

// killCgroup kills whatever is left in a container's cgroup and removes it.
func killCgroup(path string) {
	g, err := cgroupfs.Open(path)
	if err != nil || !g.Exists() {
		return
	}
	if err := g.KillAll(); err != nil {
		klog.ErrorS(err, "Kill container cgroup", "cgroup", path)
	}
	if err := g.Remove(5 * time.Second); err != nil {
		klog.ErrorS(err, "Remove container cgroup", "cgroup", path)
	}
}

// endProcesses kills what is left in a container's cgroup, removing the
// cgroup then; an empty one is left to the cleanup.
func endProcesses(path string) {
	g, err := cgroupfs.Open(path)
	if err != nil || !g.Exists() {
		return
	}
	if pids, err := g.Pids(); err == nil && len(pids) == 0 {
		return
	}
	killCgroup(path)
}

// signalOf parses an image's stop signal ("SIGTERM", "TERM" or "15").
func signalOf(name string) (unix.Signal, error) {
	if name == "" {
		return unix.SIGTERM, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	up := strings.ToUpper(name)
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	if s := unix.SignalNum(up); s != 0 {
		return s, nil
	}
	return 0, fmt.Errorf("unknown stop signal %q", name)
}

// Stop ends a container: its stop signal, up to timeout to exit, then
// SIGKILL to every process of its cgroup. Stopping an exited container is
// no error.
func (m *Manager) Stop(ctx context.Context, id string, timeout time.Duration) error {
	rec, unlock, err := m.locked(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		// The CRI wants stop idempotent: a container already removed is
		// stopped.
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	id = rec.ID
	if rec, err = m.refresh(ctx, rec, true); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if rec.Status.State == Exited {
		return nil
	}
	client := shim.Connect(rec.ShimDir)
	if timeout > 0 && rec.Status.State == Running {
		sig, err := signalOf(rec.StopSignal)
		if err != nil {
			klog.InfoS("Bad stop signal, using SIGTERM", "container", id, "err", err)
			sig = unix.SIGTERM
		}
		if err := client.Call(ctx, shim.OpKill, shim.KillArgs{ID: id, Signal: int(sig)}, nil); err != nil {
			return fmt.Errorf("stop container %s: %w", id, err)
		}
		if rec, err = m.waitExit(ctx, rec, timeout); err != nil {
			return fmt.Errorf("stop container %s: %w", id, err)
		}
		if rec.Status.State == Exited {
			return nil
		}
	}
	if err := client.Call(ctx, shim.OpKill, shim.KillArgs{ID: id, Signal: int(unix.SIGKILL), All: true}, nil); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if rec, err = m.waitExit(ctx, rec, time.Minute); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if rec.Status.State != Exited {
		return fmt.Errorf("stop container %s: still running a minute after SIGKILL", id)
	}
	klog.V(2).InfoS("Container stopped", "container", id, "exitCode", rec.Status.ExitCode)
	return nil
}

// waitExit polls until the container exited or timeout passed.
func (m *Manager) waitExit(ctx context.Context, rec *Record, timeout time.Duration) (*Record, error) {
	deadline := time.Now().Add(timeout)
	delay := 2 * time.Millisecond
	for {
		r, err := m.refresh(ctx, rec, true)
		if err != nil {
			return rec, err
		}
		if r.Status.State == Exited || time.Now().After(deadline) {
			return r, nil
		}
		rec = r
		select {
		case <-ctx.Done():
			return rec, ctx.Err()
		case <-time.After(min(delay, time.Until(deadline)+time.Millisecond)):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// Remove kills the container if it runs and removes it: once it returns
// the container is in no list and its name is free. What it leaves
// (cgroup, rootfs mount, state and upper dirs, image leases) is cleaned up
// in the background (trash.go), crash-safely. Removing an unknown container
// succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	rec, pending, err := m.trashOne(ctx, id)
	if err != nil || rec == nil {
		return err
	}
	m.throwAway(rec, pending)
	return nil
}

// trashOne ends a container's process if it may still run and removes its
// record (tombstone.go); it returns the record removed (nil: none) and
// whether persisting the removal is pending.
func (m *Manager) trashOne(ctx context.Context, id string) (*Record, bool, error) {
	rec, unlock, err := m.locked(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	steps := newStepTimer()
	id = rec.ID
	if r, err := m.refresh(ctx, rec, false); err == nil {
		rec = r
	}
	if rec.Status.State != Exited {
		// A process must not outlive its RemoveContainer: the shim kills
		// it now. An exited one only leaves files for the background.
		if err := shim.Connect(rec.ShimDir).Call(ctx, shim.OpDelete, shim.IDArgs{ID: id}, nil); err != nil {
			if !shimGone(rec.ShimDir) && !errors.Is(err, errdefs.ErrNotFound) {
				return nil, false, fmt.Errorf("remove container %s: %w", id, err)
			}
		}
	}
	steps.mark("kill")
	// The shim's delete removed the cgroup, and an exit leaves it empty
	// (the shim kills what is left before it records the exit), so
	// mostly a stat or a read; the empty cgroup's rmdir, milliseconds on
	// cgroup v1, goes in the background. A process left (a lost shim's)
	// must not outlive the removal.
	endProcesses(rec.Cgroup)
	steps.mark("cgroup")
	m.laterHooks(ctx, rec, "poststop", 0)
	steps.mark("hooks")
	removed, pending, err := m.store.Remove(id)
	if err != nil {
		return nil, false, fmt.Errorf("remove container %s: %w", id, err)
	}
	m.forget(id)
	m.creates.Forget(nameKey(rec.PodID, rec.Name, rec.Attempt), id)
	steps.mark("record")
	klog.V(2).InfoS("Container removed", "container", id, "steps", steps)
	return removed, pending, nil
}
