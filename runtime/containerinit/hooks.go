package containerinit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
// Either one failing fails the create or the start, naming the hook. The
// node's prestart and createRuntime hooks come before the createContainer
// ones: the init asks its creator to run them (MsgNodeHooks) and waits.

// hookTimeout bounds a hook that names no timeout of its own (as berthd's).
const hookTimeout = time.Minute

// hookRunner holds the container's state the hooks get on stdin.
type hookRunner struct {
	state specs.State
	// nodeFirst, when set, has the creator run its hooks before the
	// createContainer ones.
	nodeFirst func() error
	// wait, when set, waits for a started hook (see Waiter).
	wait Waiter
}

// Waiter waits for a started hook's process to end, killing it past the
// timeout: for a creator that reaps every child itself (the shim is a
// subreaper), where exec.Cmd.Wait would find no child.
type Waiter func(p *os.Process, timeout time.Duration) error

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

// RunNodeHooks runs a new container's prestart and createRuntime hooks in
// the creator's namespaces, when its init asks (MsgNodeHooks).
func RunNodeHooks(spec *specs.Spec, id, bundle string, pid int, wait Waiter) error {
	if spec.Hooks == nil {
		return nil
	}
	r := &hookRunner{state: specs.State{
		Version: specs.Version, ID: id, Pid: pid, Bundle: bundle, Annotations: spec.Annotations,
	}, wait: wait}
	//lint:ignore SA1019 prestart hooks are still handed out (NRI's generator).
	if err := r.run("prestart", spec.Hooks.Prestart, specs.StateCreated); err != nil {
		return err
	}
	return r.run("createRuntime", spec.Hooks.CreateRuntime, specs.StateCreated)
}

// IsHookError reports whether an init's error message is a hook's failure.
func IsHookError(msg string) bool {
	for _, kind := range []string{"createContainer", "startContainer", "prestart", "createRuntime"} {
		if strings.HasPrefix(msg, kind+" hook ") {
			return true
		}
	}
	return false
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
		run := runHook
		if r.wait != nil {
			run = func(h specs.Hook, data []byte) error { return runHookWaiter(h, data, r.wait) }
		}
		if err := run(h, data); err != nil {
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

// runHookWaiter is runHook for a creator that reaps its children itself.
func runHookWaiter(h specs.Hook, state []byte, wait Waiter) error {
	timeout := timeoutOf(h)
	cmd := exec.Command(h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return err
	}
	go func() {
		_, _ = inW.Write(state)
		inW.Close()
	}()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(&out, outR)
		close(done)
	}()
	err = wait(cmd.Process, timeout)
	msg := ""
	select {
	case <-done:
		msg = strings.TrimSpace(out.String())
	case <-time.After(time.Second):
		// A child of the hook holds its output open: no message.
	}
	outR.Close()
	if err == nil {
		return nil
	}
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}
