package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// TestContainerHooks runs the OCI hooks that belong inside the container,
// handed out by a CDI spec as GPU vendors' are: a createContainer hook (a
// script on the node) runs after the createRuntime hook, in the
// container's mount namespace with the container's mounts made and before
// pivot_root, gets the state on stdin
// and can write into the container's root; a startContainer hook runs in
// the container's root (its path resolved there) before the command. A
// failing or hanging createContainer hook fails CreateContainer naming the
// hook and leaves nothing; a failing startContainer hook fails the start.
func TestContainerHooks(t *testing.T) {
	f := newCDIFixture(t, "mounted\n")
	dir, specDir, dataDir, out := f.dir, f.specDir, f.dataDir, filepath.Join(f.dir, "hook-out")
	mkdirs(t, out)
	createHook := filepath.Join(dir, "hooks", "create.sh")
	writeFile(t, createHook, `#!/bin/sh
set -e
state=$(cat)
printf '%s' "$state" > "$OUT/create-state.json"
readlink /proc/self/ns/mnt > "$OUT/create-mntns"
if [ -f "$OUT/runtime-state.json" ]; then echo createRuntime-first > "$OUT/order"; else echo createContainer-first > "$OUT/order"; fi
bundle=$(printf '%s' "$state" | sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p')
cat "$bundle/rootfs/opt/hooked/hello" > "$OUT/create-saw-mount"
echo from-create-hook > "$bundle/rootfs/created-by-hook"
`)
	if err := os.Chmod(createHook, 0o755); err != nil {
		t.Fatal(err)
	}
	// Names the start hook writes at the container's root: were it run on
	// the node, they would show up at the node's root.
	startFile := "/berth-start-hook-" + filepath.Base(dir)
	t.Cleanup(func() { _ = os.Remove(startFile + ".state"); _ = os.Remove(startFile + ".mntns") })
	writeFile(t, filepath.Join(specDir, "hook.yaml"), fmt.Sprintf(`cdiVersion: "0.6.0"
kind: example.com/hook
devices:
- name: ok
  containerEdits:
    mounts:
    - hostPath: %[1]s
      containerPath: /opt/hooked
      options: [ro, bind]
    hooks:
    - hookName: createRuntime
      path: /bin/sh
      args: [sh, -c, "cat > %[3]s/runtime-state.json"]
    - hookName: createContainer
      path: %[2]s
      env: ["OUT=%[3]s"]
    - hookName: startContainer
      path: /bin/sh
      args: [sh, -c, "cat > %[4]s.state && readlink /proc/self/ns/mnt > %[4]s.mntns"]
- name: fail
  containerEdits:
    hooks:
    - hookName: createContainer
      path: /bin/sh
      args: [sh, -c, "echo no such gpu >&2; exit 3"]
- name: failruntime
  containerEdits:
    hooks:
    - hookName: createRuntime
      path: /bin/false
    - hookName: createContainer
      path: /bin/sh
      args: [sh, -c, "touch %[3]s/failruntime-ran"]
- name: failnode
  containerEdits:
    hooks:
    - hookName: createRuntime
      path: /bin/true
    - hookName: createRuntime
      path: /bin/false
- name: failprestart
  containerEdits:
    hooks:
    - hookName: prestart
      path: /bin/sh
      args: [sh, -c, "echo no driver >&2; exit 4"]
- name: hang
  containerEdits:
    hooks:
    - hookName: createContainer
      path: /bin/sleep
      args: [sleep, "600"]
      timeout: 1
- name: failstart
  containerEdits:
    hooks:
    - hookName: startContainer
      path: /bin/false
`, dataDir, createHook, out, startFile))

	f.start(t)
	f.pullBusybox(t)
	e := f.env
	ctx := framework.Context(t)
	podID, podCfg := e.pod(t, "hooks")

	cfg := ctrConfig("hooked", "sleep", "1000")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "example.com/hook=ok"}}
	id := e.run(t, podID, podCfg, cfg)
	_, info := e.status(t, id)
	pid := int(info["pid"].(float64))
	ctrNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		t.Fatal(err)
	}
	hostNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("the hook left no %s: %v", filepath.Base(p), err)
		}
		return strings.TrimSpace(string(data))
	}

	// createContainer: in the container's mount namespace, before the
	// pivot (its path and $OUT are the node's), the mounts made.
	if got := read(filepath.Join(out, "create-mntns")); got != ctrNS || got == hostNS {
		t.Errorf("createContainer hook ran in mount namespace %q; the container's is %q, the node's %q", got, ctrNS, hostNS)
	}
	if got := read(filepath.Join(out, "create-saw-mount")); got != "mounted" {
		t.Errorf("createContainer hook saw %q at the container's /opt/hooked, want the CDI mount made", got)
	}
	// The spec's order: createRuntime (on the node), then createContainer.
	if got := read(filepath.Join(out, "order")); got != "createRuntime-first" {
		t.Errorf("hook order: %s", got)
	}
	var rst specs.State
	if err := json.Unmarshal([]byte(read(filepath.Join(out, "runtime-state.json"))), &rst); err != nil {
		t.Errorf("createRuntime hook's state: %v", err)
	}
	if rst.ID != id || rst.Pid != pid || rst.Status != specs.StateCreated {
		t.Errorf("createRuntime hook's state %+v, want id %s pid %d status created", rst, id, pid)
	}
	var st specs.State
	if err := json.Unmarshal([]byte(read(filepath.Join(out, "create-state.json"))), &st); err != nil {
		t.Errorf("createContainer hook's state: %v", err)
	}
	if st.ID != id || st.Pid != pid || st.Status != specs.StateCreating || st.Bundle == "" {
		t.Errorf("createContainer hook's state %+v, want id %s pid %d status creating", st, id, pid)
	}

	// startContainer: in the container's root, where it left its files.
	r := e.execSync(t, id, "sh", "-c", "cat /created-by-hook "+startFile+".mntns && grep -o '\"status\":\"[a-z]*\"' "+startFile+".state")
	want := fmt.Sprintf("from-create-hook\n%s\n\"status\":\"created\"\n", ctrNS)
	if string(r.Stdout) != want || r.ExitCode != 0 {
		t.Errorf("the container sees (exit %d):\n%s%s\nwant:\n%s", r.ExitCode, r.Stdout, r.Stderr, want)
	}
	if _, err := os.Stat(startFile + ".state"); err == nil {
		t.Errorf("the startContainer hook wrote %s on the node", startFile+".state")
	}

	// A failing or hanging createContainer hook fails the create, named.
	before := refusedCreateLeftovers(t, e)
	for dev, msg := range map[string]string{
		"fail": "createContainer hook 0 (/bin/sh): exit status 3: no such gpu",
		"hang": "createContainer hook 0 (/bin/sleep): timed out after 1s",
		// The node's hooks come first; one failing runs no createContainer hook.
		"failruntime": "createRuntime hook 0 (/bin/false): exit status 1",
		// Without createContainer hooks berthd runs the node's hooks.
		"failnode":     "createRuntime hook 1 (/bin/false): exit status 1",
		"failprestart": "prestart hook 0 (/bin/sh): exit status 4: no driver",
	} {
		bad := ctrConfig("bad-"+dev, "sleep", "1000")
		bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: "example.com/hook=" + dev}}
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg})
		if grpcCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), msg) {
			t.Errorf("createContainer hook %s: %v, want FailedPrecondition with %q", dev, err, msg)
		}
	}
	if after := refusedCreateLeftovers(t, e); !slices.Equal(before, after) {
		t.Errorf("a failed create left something: before %v, after %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(out, "failruntime-ran")); err == nil {
		t.Errorf("a createContainer hook ran after a createRuntime hook failed")
	}

	// A failing startContainer hook fails the start and runs no command.
	fs := ctrConfig("failstart", "sleep", "1000")
	fs.CDIDevices = []*runtimeapi.CDIDevice{{Name: "example.com/hook=failstart"}}
	fsID := e.create(t, podID, podCfg, fs)
	_, err = e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: fsID})
	if grpcCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "startContainer hook 0 (/bin/false)") {
		t.Errorf("failing startContainer hook: %v", err)
	}
	if s, _ := e.status(t, fsID); s.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container with a failed startContainer hook is %v", s.State)
	}
}
