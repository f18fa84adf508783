package integration

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// systemdRuns tells whether systemd is PID 1 here (the systemd VM of
// hack/vm), as sd_booted(3) does.
func systemdRuns() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func TestSystemdDriverRefusedWithoutSystemd(t *testing.T) {
	if systemdRuns() {
		t.Skip("systemd runs here; TestSystemdCgroupDriver covers the driver")
	}
	dir := framework.NewDirs(t)
	writeFile(t, filepath.Join(dir, "config.toml"), "")
	out, code := runBerthd(t, append(framework.Args(dir), "--cgroup-driver", "systemd")...)
	if code == 0 || !strings.Contains(out, "systemd is not running") || !strings.Contains(out, "/run/systemd/system") {
		t.Errorf("berthd --cgroup-driver systemd without systemd: exit %d, output:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "berth.sock")); err == nil {
		t.Errorf("the failed berthd left its socket")
	}
}

// systemctlShow is `systemctl show -p ...` of a unit as a map.
func systemctlShow(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", unit, "-p", strings.Join(props, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl show %s: %v\n%s", unit, err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func readCgroupFile(t *testing.T, cg, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cg, file))
	if err != nil {
		t.Fatalf("read %s of cgroup %s: %v", file, cg, err)
	}
	return strings.TrimSpace(string(b))
}

// TestSystemdCgroupDriver runs a pod and containers through a berthd with
// --cgroup-driver systemd on a cgroup v2 node whose PID 1 is systemd: the
// pod is a transient scope in the kubelet-style slice, its limits are unit
// properties, the containers' cgroups are inside it with theirs, stats and
// OOM kills work, and nothing is left after removal.
func TestSystemdCgroupDriver(t *testing.T) {
	if !systemdRuns() {
		t.Skip("systemd is not PID 1 here (runs in the systemd VM of hack/vm)")
	}
	if os.Getenv("BERTH_VM_VARIANT") == "systemd" {
		// The VM must not silently skip.
		if _, err := exec.LookPath("systemctl"); err != nil {
			t.Fatal("systemd VM without systemctl")
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		t.Skip("the systemd driver test checks cgroup v2 files")
	}
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	// A slice tree of this test's own, named as the kubelet names its.
	h := fnv.New32a()
	h.Write([]byte(dir))
	top := fmt.Sprintf("kubepods%08x", h.Sum32())
	n.cgroupParent = top + "-besteffort-pod1234_5678.slice"
	sliceDir := fmt.Sprintf("/%s.slice/%s-besteffort.slice/%s", top, top, n.cgroupParent)
	t.Cleanup(func() { _ = exec.Command("systemctl", "stop", top+".slice").Run() })

	e := &ctrEnv{podNet: n, d: n.start(t, "-v", "4", "--cgroup-driver", "systemd")}
	t.Cleanup(func() {
		resp, err := e.d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return
		}
		for _, p := range resp.Items {
			removePod(t, e.d, p.Id)
		}
	})
	ctx := framework.Context(t)
	rc, err := e.d.Runtime.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_SYSTEMD {
		t.Fatalf("RuntimeConfig: %v %v, want the systemd driver", rc, err)
	}
	if _, err := e.d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}}); err != nil {
		t.Fatalf("pull busybox: %v", err)
	}

	// A cgroupfs path as parent is refused, and leaves nothing.
	bad := e.podConfig("badparent")
	bad.Linux.CgroupParent = "/kubepods/besteffort/pod1"
	if _, err := e.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: bad}); err == nil || !strings.Contains(err.Error(), "slice") {
		t.Errorf("pod with a cgroupfs parent under the systemd driver: %v", err)
	}

	// The pod: a scope in the slice, its limits as unit properties.
	podCfg := e.podConfig("sd")
	podCfg.LogDirectory = filepath.Join(e.dir, "logs", "sd")
	podCfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, MemoryLimitInBytes: 256 << 20, CpuShares: 2048}
	podID := runPod(t, e.d, podCfg)
	info := inspectPod(t, e.d, podID)
	unit := "berth-" + podID + ".scope"
	if want := path.Join(sliceDir, unit); info.Cgroup != want {
		t.Fatalf("pod cgroup %q, want %q", info.Cgroup, want)
	}
	p := systemctlShow(t, unit, "ActiveState", "ControlGroup", "Slice", "MemoryMax", "CPUQuotaPerSecUSec", "CPUWeight", "Delegate")
	if p["ActiveState"] != "active" || p["ControlGroup"] != info.Cgroup || p["Slice"] != n.cgroupParent ||
		p["MemoryMax"] != strconv.Itoa(256<<20) || p["CPUQuotaPerSecUSec"] != "500ms" || p["CPUWeight"] != "79" || p["Delegate"] != "yes" {
		t.Errorf("pod scope %s: %v", unit, p)
	}
	if got := readCgroupFile(t, info.Cgroup, "memory.max"); got != strconv.Itoa(256<<20) {
		t.Errorf("pod memory.max = %s", got)
	}
	if got := readCgroupFile(t, info.Cgroup, "cpu.max"); got != "50000 100000" {
		t.Errorf("pod cpu.max = %s", got)
	}
	if got := readCgroupFile(t, info.Cgroup, "cpu.weight"); got != "79" {
		t.Errorf("pod cpu.weight = %s, want 79 (2048 shares)", got)
	}
	// The shim sits in a leaf of the scope (no process next to the
	// containers' cgroups on v2).
	if got := readCgroupFile(t, info.Cgroup+"/shim", "cgroup.procs"); !strings.Contains("\n"+got+"\n", fmt.Sprintf("\n%d\n", info.Pid)) {
		t.Errorf("shim %d not in %s/shim: %q", info.Pid, info.Cgroup, got)
	}

	// A container with limits: its cgroup in the pod's scope.
	cfg := ctrConfig("busy", "sh", "-c", "while :; do :; done")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, MemoryLimitInBytes: 64 << 20, CpuShares: 512}
	ctrID := e.run(t, podID, podCfg, cfg)
	_, ci := e.status(t, ctrID)
	ctrCg := path.Join(info.Cgroup, ctrID)
	if got, _ := ci["cgroup"].(string); got != ctrCg {
		t.Errorf("container cgroup %q, want %q", got, ctrCg)
	}
	for file, want := range map[string]string{"memory.max": strconv.Itoa(64 << 20), "cpu.max": "20000 100000", "cpu.weight": "20"} {
		if got := readCgroupFile(t, ctrCg, file); got != want {
			t.Errorf("container %s = %s, want %s", file, got, want)
		}
	}
	pid := int(ci["pid"].(float64))
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err != nil || !strings.Contains(string(b), "berth-"+podID+".scope") {
		// The container has its own cgroup namespace: the host's view is
		// the scope's cgroup.procs.
		if got := readCgroupFile(t, ctrCg, "cgroup.procs"); !strings.Contains("\n"+got+"\n", fmt.Sprintf("\n%d\n", pid)) {
			t.Errorf("container process %d not in %s: %q", pid, ctrCg, got)
		}
	}

	// Stats of the container and of the pod.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs, err := e.d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctrID})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		ps, err := e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
		if err != nil {
			t.Fatalf("PodSandboxStats: %v", err)
		}
		if cs.Stats.GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 && cs.Stats.GetMemory().GetWorkingSetBytes().GetValue() > 0 &&
			ps.Stats.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 && ps.Stats.GetLinux().GetMemory().GetWorkingSetBytes().GetValue() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats stay empty: container %v pod %v", cs.Stats, ps.Stats)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// OOM kill, seen by the shim in the container's cgroup.
	oomCfg := ctrConfig("oom", "sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done")
	oomCfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}
	oom := e.run(t, podID, podCfg, oomCfg)
	if st := e.waitState(t, oom, runtimeapi.ContainerState_CONTAINER_EXITED, 60*time.Second); st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("oom container: exit %d reason %q, want 137 OOMKilled", st.ExitCode, st.Reason)
	}

	// Removal: the scope and every cgroup go.
	for _, id := range []string{ctrID, oom} {
		if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
			t.Errorf("StopContainer: %v", err)
		}
		if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer: %v", err)
		}
	}
	// An exited container's empty cgroup goes in the background cleanup
	// that RemoveContainer does not wait for.
	waitGone(t, time.Minute, filepath.Join("/sys/fs/cgroup", ctrCg))
	removePod(t, e.d, podID)
	if p := systemctlShow(t, unit, "LoadState", "ActiveState"); p["LoadState"] != "not-found" && p["ActiveState"] != "inactive" {
		t.Errorf("pod scope after removal: %v", p)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", info.Cgroup)); !os.IsNotExist(err) {
		t.Errorf("pod cgroup %s after removal: %v", info.Cgroup, err)
	}
	out, _ := exec.Command("systemctl", "list-units", "--all", "--no-legend", "berth-*").CombinedOutput()
	if strings.Contains(string(out), podID) {
		t.Errorf("units left: %s", out)
	}
}
