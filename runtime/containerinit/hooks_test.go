package containerinit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestHooksGetStateAndFailByName(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "state")
	r := newHookRunner(&specs.Spec{Annotations: map[string]string{"a": "b"}}, "/run/berth/c1")
	ok := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `cat > "$OUT"`}, Env: []string{"OUT=" + out}}
	if err := r.run("createContainer", []specs.Hook{ok}, specs.StateCreating); err != nil {
		t.Fatal(err)
	}
	var st specs.State
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("state %q: %v", data, err)
	}
	if st.ID != "c1" || st.Bundle != "/run/berth/c1" || st.Status != specs.StateCreating || st.Pid != os.Getpid() || st.Annotations["a"] != "b" {
		t.Errorf("state %+v", st)
	}

	// The second hook fails: its index, path and output name it.
	bad := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "echo no gpu; exit 3"}}
	err = r.run("startContainer", []specs.Hook{ok, bad}, specs.StateCreated)
	if err == nil || !strings.Contains(err.Error(), "startContainer hook 1 (/bin/sh)") || !strings.Contains(err.Error(), "no gpu") {
		t.Errorf("failing hook: %v", err)
	}

	// A hook past its timeout is killed and says so.
	one := 1
	slow := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "sleep 60"}, Timeout: &one}
	start := time.Now()
	err = r.run("createContainer", []specs.Hook{slow}, specs.StateCreating)
	if err == nil || !strings.Contains(err.Error(), "timed out after 1s") {
		t.Errorf("slow hook: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("slow hook held the init %s", d)
	}
	if d := HooksTimeout([]specs.Hook{slow, ok}); d != time.Second+hookTimeout {
		t.Errorf("HooksTimeout %s, want %s", d, time.Second+hookTimeout)
	}
	var none *hookRunner
	if err := none.run("startContainer", []specs.Hook{bad}, specs.StateCreated); err != nil {
		t.Errorf("no runner (an exec) ran hooks: %v", err)
	}
}

// The shim runs the node's create hooks with its own waiter (its reaper
// takes every child's status).
func TestRunNodeHooksWithWaiter(t *testing.T) {
	out := filepath.Join(t.TempDir(), "log")
	hook := func(kind string) specs.Hook {
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `echo ` + kind + ` $(cat) >> "$OUT"`}, Env: []string{"OUT=" + out}}
	}
	waited := 0
	wait := func(p *os.Process, _ time.Duration) error {
		waited++
		st, err := p.Wait()
		if err != nil {
			return err
		}
		if !st.Success() {
			return errors.New(st.String())
		}
		return nil
	}
	//lint:ignore SA1019 prestart hooks are still handed out (NRI's generator).
	spec := &specs.Spec{Hooks: &specs.Hooks{Prestart: []specs.Hook{hook("prestart")}, CreateRuntime: []specs.Hook{hook("createRuntime")}}}
	if err := RunNodeHooks(spec, "c1", "/b/c1", 42, wait); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if waited != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "prestart {") || !strings.HasPrefix(lines[1], "createRuntime {") || !strings.Contains(lines[1], `"pid":42`) || !strings.Contains(lines[1], `"status":"created"`) {
		t.Errorf("waited %d, hooks logged %q", waited, lines)
	}
	spec.Hooks.CreateRuntime = []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo broken >&2; exit 4"}}}
	if err := RunNodeHooks(spec, "c1", "/b/c1", 42, wait); err == nil || !strings.Contains(err.Error(), "createRuntime hook 0 (/bin/sh)") || !strings.Contains(err.Error(), "broken") || !IsHookError(err.Error()) {
		t.Errorf("failing createRuntime hook: %v", err)
	}
}
