package integration

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/test/framework"
)

// TestPodSandboxResize resizes a running pod in place
// (UpdatePodSandboxResources, as the kubelet does) and reads the limits
// back from the pod cgroup's files, under the cgroupfs driver on the
// node's cgroup version and, where systemd is PID 1 (hack/vm's systemd
// guest), under the systemd driver too. The new limits show in
// PodSandboxStatus(verbose) and survive a berthd restart; bad requests are
// refused and change nothing.
func TestPodSandboxResize(t *testing.T) {
	// The systemd VM runs the systemd driver only: the initramfs VM
	// covers cgroupfs on cgroup v2, and each run costs minutes there.
	if os.Getenv("BERTH_VM_VARIANT") != "systemd" {
		t.Run("cgroupfs", func(t *testing.T) { testPodResize(t, false) })
	}
	if systemdRuns() {
		t.Run("systemd", func(t *testing.T) { testPodResize(t, true) })
	}
}

func testPodResize(t *testing.T, systemd bool) {
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	args := []string{"-v", "4"}
	if systemd {
		h := fnv.New32a()
		h.Write([]byte(dir))
		top := fmt.Sprintf("kubepods%08x", h.Sum32())
		n.cgroupParent = top + "-burstable-podresize.slice"
		t.Cleanup(func() { _ = exec.Command("systemctl", "stop", top+".slice").Run() })
		args = append(args, "--cgroup-driver", "systemd")
	}
	e := &ctrEnv{podNet: n, d: n.start(t, args...)}
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
	if _, err := e.d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}}); err != nil {
		t.Fatalf("pull busybox: %v", err)
	}

	podCfg := e.podConfig("resize")
	podCfg.LogDirectory = filepath.Join(e.dir, "logs", "resize")
	podCfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 20000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20}
	podID := runPod(t, e.d, podCfg)
	ctr := e.run(t, podID, podCfg, ctrConfig("sleeper", "sleep", "1000"))
	cg := inspectPod(t, e.d, podID).Cgroup

	read := func(ctrl, file string) string {
		t.Helper()
		p := filepath.Join("/sys/fs/cgroup", ctrl, cg, file)
		if cgroups.Unified() {
			p = filepath.Join("/sys/fs/cgroup", cg, file)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return strings.TrimSpace(string(b))
	}
	check := func(when string, quota, mem int64, shares string) {
		t.Helper()
		if cgroups.Unified() {
			if got, want := read("", "cpu.max"), fmt.Sprintf("%d 100000", quota); got != want {
				t.Errorf("%s: cpu.max %q, want %q", when, got, want)
			}
			if got := read("", "memory.max"); got != strconv.FormatInt(mem, 10) {
				t.Errorf("%s: memory.max %q, want %d", when, got, mem)
			}
			return
		}
		if got := read("cpu", "cpu.cfs_quota_us"); got != strconv.FormatInt(quota, 10) {
			t.Errorf("%s: cpu.cfs_quota_us %q, want %d", when, got, quota)
		}
		if got := read("memory", "memory.limit_in_bytes"); got != strconv.FormatInt(mem, 10) {
			t.Errorf("%s: memory.limit_in_bytes %q, want %d", when, got, mem)
		}
		if got := read("cpu", "cpu.shares"); got != shares {
			t.Errorf("%s: cpu.shares %q, want %s", when, got, shares)
		}
	}
	check("before the resize", 20000, 64<<20, "256")

	resize := &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID,
		Resources:    &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 128 << 20},
		Overhead:     &runtimeapi.LinuxContainerResources{CpuShares: 24, MemoryLimitInBytes: 16 << 20},
	}
	if _, err := e.d.Runtime.UpdatePodSandboxResources(ctx, resize); err != nil {
		t.Fatalf("UpdatePodSandboxResources: %v", err)
	}
	check("after the resize", 50000, 144<<20, "1048")
	if st, _ := e.status(t, ctr); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container after the resize: %v", st.State)
	}
	podResources := func() (res, over map[string]any) {
		t.Helper()
		resp, err := e.d.Runtime.PodSandboxStatus(framework.Context(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
		if err != nil {
			t.Fatalf("PodSandboxStatus: %v", err)
		}
		var info struct {
			Config struct {
				Resources map[string]any `json:"resources"`
				Overhead  map[string]any `json:"overhead"`
			} `json:"config"`
		}
		if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
			t.Fatal(err)
		}
		return info.Config.Resources, info.Config.Overhead
	}
	wantStatus := func(when string) {
		t.Helper()
		res, over := podResources()
		if res["cpuQuota"] != float64(50000) || res["memoryLimit"] != float64(128<<20) || res["cpuShares"] != float64(1024) || over["memoryLimit"] != float64(16<<20) {
			t.Errorf("%s: PodSandboxStatus shows resources %v overhead %v", when, res, over)
		}
	}
	wantStatus("after the resize")

	// Refused, and nothing changes.
	for _, c := range []struct {
		req  *runtimeapi.UpdatePodSandboxResourcesRequest
		code codes.Code
	}{
		{&runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "nosuchpod", Resources: resize.Resources}, codes.NotFound},
		{&runtimeapi.UpdatePodSandboxResourcesRequest{Resources: resize.Resources}, codes.InvalidArgument},
		{&runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: podID, Resources: &runtimeapi.LinuxContainerResources{CpusetCpus: "x-y", MemoryLimitInBytes: 1 << 20}}, codes.InvalidArgument},
		{&runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: podID, Resources: &runtimeapi.LinuxContainerResources{CpuShares: 64, MemoryLimitInBytes: 4096}}, codes.InvalidArgument},
	} {
		if _, err := e.d.Runtime.UpdatePodSandboxResources(ctx, c.req); grpcCode(err) != c.code {
			t.Errorf("UpdatePodSandboxResources(%v): %v, want %v", c.req, err, c.code)
		}
	}
	check("after the refused resizes", 50000, 144<<20, "1048")
	wantStatus("after the refused resizes")

	e.d.Kill()
	e.d = e.start(t, args...)
	wantStatus("after a berthd restart")
	check("after a berthd restart", 50000, 144<<20, "1048")

	// Shrunk again, with the restarted berthd; the overhead is kept.
	resize.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 30000, CpuPeriod: 100000, MemoryLimitInBytes: 96 << 20}
	resize.Overhead = nil
	if _, err := e.d.Runtime.UpdatePodSandboxResources(framework.Context(t), resize); err != nil {
		t.Fatalf("UpdatePodSandboxResources after the restart: %v", err)
	}
	check("after the second resize", 30000, 112<<20, "536")

	// A stopped pod has no cgroup to resize.
	if _, err := e.d.Runtime.StopPodSandbox(framework.Context(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.UpdatePodSandboxResources(framework.Context(t), resize); grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("resizing a stopped pod: %v, want FailedPrecondition", err)
	}
	removePod(t, e.d, podID)
	if _, err := e.d.Runtime.UpdatePodSandboxResources(framework.Context(t), resize); grpcCode(err) != codes.NotFound {
		t.Errorf("resizing a removed pod: %v, want NotFound", err)
	}
}
