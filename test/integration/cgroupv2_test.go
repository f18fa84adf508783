package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/test/framework"
)

// TestCgroupV2Resources checks on a cgroup v2 node what the kernel got:
// the pod's shim in a leaf so that the containers' cgroups get controllers,
// each limit in its v2 file (the kubelet's CPU weight), the unified map,
// an update, the container's own cgroup namespace, device rules through
// eBPF, stats, a stop that kills the whole cgroup, OOMKilled, and nothing
// left after the pod goes. One berthd for all: the VM is slow.
func TestCgroupV2Resources(t *testing.T) {
	if !cgroups.Unified() {
		t.Skip("cgroup v2 only")
	}
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "v2")
	info := inspectPod(t, e.d, podID)

	ctrs, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	hugetlb := strings.Contains(string(ctrs), "hugetlb")
	res := &runtimeapi.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 20000, CpuPeriod: 100000,
		MemoryLimitInBytes: 64 << 20, CpusetCpus: "0",
		Unified: map[string]string{"memory.high": strconv.Itoa(48 << 20), "pids.max": "100"},
	}
	if hugetlb {
		res.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}
	}
	cfg := ctrConfig("limited", "sh", "-c", "sleep 1000 & sleep 1000 & wait")
	cfg.Linux.Resources = res
	id := e.run(t, podID, podCfg, cfg)
	_, ci := e.status(t, id)
	cg := ci["cgroup"].(string)
	dir := filepath.Join("/sys/fs/cgroup", cg)
	podDir := filepath.Dir(dir)

	// The shim is in the pod's leaf; the pod's cgroup holds no process and
	// delegates the controllers.
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.Pid)); strings.TrimSpace(string(b)) != "0::"+filepath.Dir(cg)+"/"+cgroups.ShimLeaf {
		t.Errorf("shim's cgroup %q, want the leaf of %s", b, filepath.Dir(cg))
	}
	if b, _ := os.ReadFile(filepath.Join(podDir, "cgroup.procs")); len(b) != 0 {
		t.Errorf("processes in the pod's cgroup itself: %q", b)
	}
	sub, _ := os.ReadFile(filepath.Join(podDir, "cgroup.subtree_control"))
	for _, c := range []string{"cpu", "memory", "pids", "cpuset"} {
		if !strings.Contains(string(sub), c) {
			t.Errorf("pod cgroup delegates %q, no %s", strings.TrimSpace(string(sub)), c)
		}
	}

	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return strings.TrimSpace(string(b))
	}
	want := map[string]string{
		"cpu.weight":  "20", // 1 + (512-2)*9999/262142
		"cpu.max":     "20000 100000",
		"memory.max":  strconv.Itoa(64 << 20),
		"memory.high": strconv.Itoa(48 << 20),
		"pids.max":    "100",
		"cpuset.cpus": "0",
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
		want["memory.swap.max"] = "0" // memory+swap == memory, as containerd's CRI sets it
	}
	if hugetlb {
		want["hugetlb.2MB.max"] = strconv.Itoa(4 << 20)
	}
	for f, v := range want {
		if got := read(f); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}

	// Inside: its own cgroup namespace, rooted at its cgroup, with its
	// limits; /dev/mem is not in its device list even when made by mknod,
	// /dev/zero is. (One exec: they are slow in an emulated VM.)
	ctx := framework.Context(t)
	x, err := e.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Timeout: 120, Cmd: []string{"sh", "-c",
		"cat /proc/self/cgroup /sys/fs/cgroup/memory.max; mknod /tmp/mem c 1 1 || exit 3; head -c1 /tmp/mem >/dev/null; echo $?; head -c1 /dev/zero | wc -c"}})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if out := strings.Fields(string(x.Stdout)); x.ExitCode != 0 || len(out) != 4 || out[0] != "0::/" || out[1] != strconv.Itoa(64<<20) ||
		out[2] == "0" || out[3] != "1" || !strings.Contains(string(x.Stderr), "not permitted") {
		t.Errorf("inside: exit %d stdout %q stderr %q; want 0::/, the limit, /dev/mem refused and /dev/zero read", x.ExitCode, x.Stdout, x.Stderr)
	}

	// An update lands in the same files; the io weight (the CRI has it in
	// the unified map only) where the kernel weighs I/O.
	up := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuShares: 1024, CpuQuota: 50000, CpuPeriod: 100000}
	want = map[string]string{"memory.max": strconv.Itoa(96 << 20), "cpu.weight": "39", "cpu.max": "50000 100000"}
	if _, err := os.Stat(filepath.Join(dir, "io.weight")); err == nil {
		up.Unified = map[string]string{"io.weight": "default 200"}
		want["io.weight"] = "default 200"
	} else {
		t.Log("no io.weight on this kernel: io weight not checked")
	}
	if _, err := e.d.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: up}); err != nil {
		t.Fatalf("update: %v", err)
	}
	for f, v := range want {
		if got := read(f); got != v {
			t.Errorf("after update %s = %q, want %q", f, got, v)
		}
	}

	// Stats come from cpu.stat and memory.stat.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := e.d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		ps, err := e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
		if err != nil {
			t.Fatal(err)
		}
		m, pm := s.Stats.GetMemory(), ps.Stats.GetLinux().GetMemory()
		if s.Stats.GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 && m.GetWorkingSetBytes().GetValue() > 0 && m.GetUsageBytes().GetValue() > 0 &&
			pm.GetWorkingSetBytes().GetValue() >= m.GetWorkingSetBytes().GetValue() && ps.Stats.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats: container %v pod %v", s.Stats, ps.Stats.GetLinux())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Stop kills every process of the cgroup (the init ignores SIGTERM as
	// PID 1 of its namespace; its children would not get it anyway).
	pids := strings.Fields(read("cgroup.procs"))
	if len(pids) < 3 {
		t.Errorf("processes of the container: %v, want sh and two sleeps", pids)
	}
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, p := range pids {
		if b, err := os.ReadFile("/proc/" + p + "/cgroup"); err == nil && strings.Contains(string(b), cg) {
			t.Errorf("process %s of the container outlived its stop", p)
		}
	}

	// A container over its memory limit: OOMKilled, from memory.events
	// read before its cgroup goes.
	oomCfg := ctrConfig("oom", "sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done")
	oomCfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}
	oom := e.run(t, podID, podCfg, oomCfg)
	if st := e.waitState(t, oom, runtimeapi.ContainerState_CONTAINER_EXITED, 120*time.Second); st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("oom container: exit %d reason %q, want 137 OOMKilled", st.ExitCode, st.Reason)
	}

	removePod(t, e.d, podID)
	if _, err := os.Stat(podDir); !os.IsNotExist(err) {
		t.Errorf("pod cgroup %s left: %v", podDir, err)
	}
}
