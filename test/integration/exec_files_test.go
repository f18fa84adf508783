package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// fdsOn counts the descriptors of process pid that are the namespace file
// ns (as /proc/<pid>/ns/<kind> reads, e.g. "mnt:[4026532243]").
func fdsOn(t *testing.T, pid int, ns string) int {
	t.Helper()
	dir := filepath.Join("/proc", itoa(pid), "fd")
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == ns {
			n++
		}
	}
	return n
}

// TestExecSyncFilesClosedAtExit: the Go shim keeps a container's
// namespaces open from one ExecSync to the next, and closes them by the
// time berthd reports the container exited: held longer, they would keep
// the container's mounts (its rootfs) alive after it is gone.
func TestExecSyncFilesClosedAtExit(t *testing.T) {
	// No hand-off to berth-mon, whose exec would close them as well.
	e := newCtrEnvWith(t, func(string) string { return "shim_idle_monitor = \"0\"\n" }, "-v", "4")
	pod, podCfg := e.pod(t, "kept")
	shimPid := inspectPod(t, e.d, pod).Pid
	id := e.run(t, pod, podCfg, ctrConfig("sleeper", "sleep", "1000"))
	resp, err := e.d.Runtime.ContainerStatus(framework.Context(t), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Pid int }
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("container info %q: %v", resp.Info["info"], err)
	}
	mnt, err := os.Readlink(filepath.Join("/proc", itoa(info.Pid), "ns", "mnt"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := e.execSync(t, id, "true"); r.ExitCode != 0 {
			t.Fatalf("exec: exit %d, stderr %q", r.ExitCode, r.Stderr)
		}
		if n := fdsOn(t, shimPid, mnt); n != 1 {
			t.Fatalf("after an exec the shim holds %d descriptors on the container's mount namespace, want 1", n)
		}
	}
	if _, err := e.d.Runtime.StopContainer(framework.Context(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if n := fdsOn(t, shimPid, mnt); n != 0 {
		t.Fatalf("the container exited, and its shim still holds %d descriptors on its mount namespace", n)
	}
}
