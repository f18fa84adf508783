package containerinit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The OCI hooks that run inside the container are the init's to run (the
// others are berthd's, runtime/container): createContainer hooks once the
// container's mounts are made but before pivot_root, so that a hook's path
// and what it touches resolve on the node (GPU vendors' CDI specs rely on
// it); startContainer hooks after the start message, just before the
// command is executed, with the container's root, user and capabilities.
// Either one failing fails the create or the start, naming the hook.

// hookTimeout bounds a hook that names no timeout of its own (as berthd's).
const hookTimeout = time.Minute

// hookRunner holds the container's state the hooks get on stdin.
type hookRunner struct {
	state specs.State
}

// newHookRunner must be called before pivot_root: the pid is read from the
// node's /proc, which is the pid the spec means ("as seen by the host").
func newHookRunner(spec *specs.Spec, bundle string) *hookRunner {
	pid := os.Getpid()
	if link, err := os.Readlink("/proc/self"); err == nil {
		if p, err := strconv.Atoi(link); err == nil {
			pid = p
		}
	}
	return &hookRunner{state: specs.State{
		Version: specs.Version, ID: filepath.Base(bundle), Status: specs.StateCreating,
		Pid: pid, Bundle: bundle, Annotations: spec.Annotations,
	}}
}

// HooksTimeout is the longest hooks may take, one after another: a
// creator waiting for the init adds it to its own bound, so that a hook's
// timeout, not the creator's, ends a slow hook.
func HooksTimeout(hooks []specs.Hook) time.Duration {
	var d time.Duration
	for _, h := range hooks {
		d += timeoutOf(h)
	}
	return d
}

func timeoutOf(h specs.Hook) time.Duration {
	if h.Timeout != nil && *h.Timeout > 0 {
		return time.Duration(*h.Timeout) * time.Second
	}
	return hookTimeout
}

// IsHookError reports whether an init's error message is a hook's failure.
func IsHookError(msg string) bool {
	return strings.HasPrefix(msg, "createContainer hook ") || strings.HasPrefix(msg, "startContainer hook ")
}

// run runs hooks one after another; the first failure ends them.
func (r *hookRunner) run(kind string, hooks []specs.Hook, status specs.ContainerState) error {
	if r == nil || len(hooks) == 0 {
		return nil
	}
	st := r.state
	st.Status = status
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		if err := runHook(h, data); err != nil {
			return fmt.Errorf("%s hook %d (%s): %w", kind, i, h.Path, err)
		}
	}
	return nil
}

func runHook(h specs.Hook, state []byte) error {
	timeout := timeoutOf(h)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A hook that forked a child keeping its output open must not hold
	// the init past the timeout.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	msg := strings.TrimSpace(out.String())
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}
