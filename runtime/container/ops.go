package container

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/spec"
)

// running returns the record of a container that runs now.
func (m *Manager) running(ctx context.Context, id, what string) (*Record, error) {
	id, err := m.resolveID(id)
	if err != nil {
		return nil, err
	}
	rec, err := m.store.Get(id)
	if err != nil {
		return nil, err
	}
	if rec, err = m.refresh(ctx, rec, false); err != nil {
		return nil, err
	}
	if rec.Status.State != Running {
		return nil, fmt.Errorf("%s: container %s is %s, not running: %w", what, id, rec.Status.State, errdefs.ErrFailedPrecondition)
	}
	return rec, nil
}

// ExecResult is what a command run by ExecSync did.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// execGrace is how long after the command's own timeout berthd waits for
// the shim to report it killed.
const execGrace = 5 * time.Second

// ExecOutputLimit bounds what ExecSync returns of a command's stdout and
// stderr together, so that the reply fits the 16 MiB message a CRI client
// (the kubelet, crictl) accepts by default: each stream keeps its
// beginning, and when both do not fit each gets at least half (see
// shim.OutputBudget). The 4 KiB left are far more than the rest of the
// message (field tags, lengths, the exit code) takes.
const ExecOutputLimit = 16<<20 - 4<<10

// ExecSync runs cmd in a running container and waits for it; with a
// timeout the command is killed then, and the error wraps
// context.DeadlineExceeded. The output is streamed from the shim and cut
// to ExecOutputLimit as it comes: berthd never holds more of it.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (*ExecResult, error) {
	if len(cmd) == 0 || cmd[0] == "" {
		return nil, invalid("exec: no command")
	}
	rec, err := m.running(ctx, id, "exec")
	if err != nil {
		return nil, err
	}
	callCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, timeout+execGrace)
		defer cancel()
	}
	res, err := shim.Connect(rec.ShimDir).ExecSync(callCtx, shim.ExecSyncArgs{ID: rec.ID, Cmd: cmd, Timeout: timeout}, ExecOutputLimit)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", rec.ID, err)
	}
	if res.TimedOut {
		return nil, fmt.Errorf("exec in container %s: command %q timed out after %s: %w", rec.ID, cmd, timeout, context.DeadlineExceeded)
	}
	if kept := int64(len(res.Stdout) + len(res.Stderr)); kept < res.StdoutBytes+res.StderrBytes {
		// As CRI-O does, say what was cut where the operator looks: the
		// reply itself has no place for it.
		klog.InfoS("ExecSync output cut to fit the CRI message limit", "container", rec.ID, "cmd", cmd,
			"stdoutBytes", res.StdoutBytes, "stdoutKept", len(res.Stdout), "stderrBytes", res.StderrBytes, "stderrKept", len(res.Stderr))
	}
	return &ExecResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// UpdateResources changes the cgroup limits of a created or running
// container.
func (m *Manager) UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return invalid("update resources: no linux resources")
	}
	lr, err := spec.Resources(r)
	if err != nil {
		return err
	}
	rec, unlock, err := m.locked(id)
	if err != nil {
		return err
	}
	defer unlock()
	id = rec.ID
	if rec, err = m.refresh(ctx, rec, false); err != nil {
		return err
	}
	if rec.Status.State == Exited {
		return fmt.Errorf("update resources: container %s has exited: %w", id, errdefs.ErrFailedPrecondition)
	}
	// berthd made the cgroup; it changes it too (the shim only moves the
	// process in).
	cg, err := cgroups.Load(rec.Cgroup)
	if err != nil {
		return fmt.Errorf("update resources of container %s: %w", id, err)
	}
	if err := cg.Update(lr); err != nil {
		return fmt.Errorf("update resources of container %s: %w", id, err)
	}
	_, err = m.store.Update(id, func(rec *Record) error {
		rec.Resources = resourcesOf(r)
		return nil
	})
	return err
}

// ReopenLog makes the shim reopen a running container's log file, after
// the kubelet rotated it.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	rec, err := m.running(ctx, id, "reopen log")
	if err != nil {
		return err
	}
	if err := shim.Connect(rec.ShimDir).Call(ctx, shim.OpReopenLog, shim.IDArgs{ID: rec.ID}, nil); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", rec.ID, err)
	}
	return nil
}
