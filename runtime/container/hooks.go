package container

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
)

// OCI hooks in a container's spec (NRI plugins add them) are run by
// berthd, in the node's namespaces, with the container's state on stdin as
// the runtime spec says: prestart and createRuntime hooks once the
// container's process exists (a failure fails the create, which is
// undone; with createContainer hooks, which must come after them, the shim
// runs them instead, while the init waits), poststart hooks after its start and poststop hooks at its
// removal (a failure is logged). createContainer and startContainer hooks
// run inside the container: the container's init runs them
// (runtime/containerinit/hooks.go).

// hookTimeout bounds a hook that names no timeout of its own.
const hookTimeout = time.Minute

func hasHooks(s *specs.Spec) bool {
	h := s.Hooks
	//lint:ignore SA1019 prestart hooks are still handed out (NRI's generator).
	return h != nil && len(h.Prestart)+len(h.CreateRuntime)+len(h.Poststart)+len(h.Poststop) > 0
}

// runHooks runs hooks one after another; the first failure ends them.
func runHooks(ctx context.Context, kind string, hooks []specs.Hook, st specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		timeout := hookTimeout
		if h.Timeout != nil && *h.Timeout > 0 {
			timeout = time.Duration(*h.Timeout) * time.Second
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		cmd := exec.CommandContext(hctx, h.Path)
		if len(h.Args) > 0 {
			cmd.Args = h.Args
		}
		cmd.Env = h.Env
		cmd.Stdin = bytes.NewReader(data)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil {
			msg := strings.TrimSpace(out.String())
			if len(msg) > 512 {
				msg = msg[:512] + "..."
			}
			if msg == "" {
				return fmt.Errorf("%s hook %d (%s): %w", kind, i, h.Path, err)
			}
			return fmt.Errorf("%s hook %d (%s): %w: %s", kind, i, h.Path, err, msg)
		}
	}
	return nil
}

func hookState(rec *Record, s *specs.Spec, status specs.ContainerState, pid int) specs.State {
	return specs.State{
		Version: specs.Version, ID: rec.ID, Status: status, Pid: pid,
		Bundle: rec.StateDir, Annotations: s.Annotations,
	}
}

// createHooks runs a new container's prestart and createRuntime hooks. A
// hook that failed is FailedPrecondition (the node is not as the hook
// needs it), as when the shim runs them (runtime/process) and as the
// container's own hooks' failures are.
func createHooks(ctx context.Context, rec *Record, s *specs.Spec, pid int) error {
	if s.Hooks == nil {
		return nil
	}
	st := hookState(rec, s, specs.StateCreated, pid)
	//lint:ignore SA1019 prestart hooks are still handed out (NRI's generator).
	err := runHooks(ctx, "prestart", s.Hooks.Prestart, st)
	if err == nil {
		err = runHooks(ctx, "createRuntime", s.Hooks.CreateRuntime, st)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return err
}

// laterHooks runs a container's poststart or poststop hooks, if it has
// any; a failure is logged.
func (m *Manager) laterHooks(ctx context.Context, rec *Record, kind string, pid int) {
	if !rec.Hooks {
		return
	}
	s, err := m.Spec(rec)
	if err != nil || s.Hooks == nil {
		klog.ErrorS(err, "Container hooks: no spec", "container", rec.ID, "hooks", kind)
		return
	}
	hooks, status := s.Hooks.Poststart, specs.StateRunning
	if kind == "poststop" {
		hooks, status = s.Hooks.Poststop, specs.StateStopped
	}
	if err := runHooks(ctx, kind, hooks, hookState(rec, s, status, pid)); err != nil {
		klog.ErrorS(err, "Container hook failed", "container", rec.ID)
	}
}
