package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/spec"
	"github.com/berth-dev/berth/test/framework"
)

// beyondNode are a CPU, a memory node and a hugepage size this node lacks.
func beyondNode() (cpu, mem, pageSize string) {
	n := spec.ReadNode()
	cpu, mem = fmt.Sprint(maxOf(n.CPUs)+1), fmt.Sprint(maxOf(n.Mems)+1)
	for _, s := range []string{"1GB", "16GB", "64KB"} {
		if !n.HugepageSizes[s] {
			return cpu, mem, s
		}
	}
	return cpu, mem, "3MB"
}

func maxOf(set map[int]bool) int {
	m := 0
	for k := range set {
		m = max(m, k)
	}
	return m
}

// TestRequestValidation: each request berth must refuse up front gets its
// gRPC code and a message naming the field, and leaves nothing behind: no
// pod or container listed, no dir under the state and root dirs, no cgroup.
func TestRequestValidation(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)
	cpu, mem, pageSize := beyondNode()
	long := strings.Repeat("n", 100<<10)

	for _, tc := range []struct {
		name string
		edit func(*runtimeapi.PodSandboxConfig)
		msg  string
	}{
		{"dns server newline", func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.0.0.1\nnameserver 6.6.6.6"}}
		}, "dns_config.servers"},
		{"dns search newline", func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Searches: []string{"a.example\noptions ndots:0"}}
		}, "dns_config.searches"},
		{"dns option newline", func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Options: []string{"ndots:1\nnameserver 6.6.6.6"}}
		}, "dns_config.options"},
		{"long pod name", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = long }, "metadata.name"},
		{"long namespace", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = strings.Repeat("n", 64) }, "metadata.namespace"},
		{"hostname newline", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "a\n6.6.6.6 evil" }, "hostname"},
		{"sysctl value newline", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.core.somaxconn": "1\n2"}
		}, "linux.sysctls"},
		{"cgroup parent dotdot", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent += "/../x" }, "linux.cgroup_parent"},
		{"pod cpuset beyond node", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetCpus: cpu}
		}, "linux.resources.cpuset_cpus"},
		{"pod memory below floor", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20}
		}, "memory_limit_in_bytes 1048576: must be at least"},
	} {
		cfg := e.podConfig("refused")
		tc.edit(cfg)
		_, err := e.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if grpcCode(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", tc.name, err, tc.msg)
		}
		if len(fmt.Sprint(err)) > 1000 {
			t.Errorf("%s: a message of %d bytes", tc.name, len(fmt.Sprint(err)))
		}
		e.noPods(t, tc.name)
	}

	pod, podCfg := e.pod(t, "valid")
	for _, tc := range []struct {
		name string
		edit func(*runtimeapi.ContainerConfig)
		msg  string
	}{
		{"env key NUL", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A\x00B", Value: []byte("1")}}
		}, "envs.key"},
		{"env key =", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A=B", Value: []byte("1")}}
		}, "envs.key"},
		{"env value NUL", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1\x002")}}
		}, "envs[\"A\"].value"},
		{"command NUL", func(c *runtimeapi.ContainerConfig) { c.Command = []string{"sh\x00", "-c", "true"} }, "command[0]"},
		{"long container name", func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = long }, "metadata.name"},
		{"cpuset cpus beyond node", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetCpus: "0," + cpu}
		}, "linux.resources.cpuset_cpus"},
		{"cpuset mems beyond node", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetMems: mem}
		}, "linux.resources.cpuset_mems"},
		{"memory below floor", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20}
		}, "memory_limit_in_bytes 1048576: must be at least"},
		{"hugepage size the node lacks", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: pageSize, Limit: 1 << 30}}}
		}, "hugepage_limits.page_size"},
		{"unified file outside the cgroup", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{Unified: map[string]string{"../cgroup.procs": "1"}}
		}, "linux.resources.unified"},
	} {
		cfg := ctrConfig("refused", "sleep", "100")
		tc.edit(cfg)
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if grpcCode(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", tc.name, err, tc.msg)
		}
		e.nothingLeft(t)
		e.noContainerCgroups(t, pod)
	}

	// The floor is honest: a container with just that much runs.
	floor := ctrConfig("floor", "sh", "-c", "echo ok")
	floor.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: spec.MinMemoryLimit}
	id := e.run(t, pod, podCfg, floor)
	if st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 2*60e9); st.ExitCode != 0 {
		t.Errorf("container at the memory floor: exit %d %s %s", st.ExitCode, st.Reason, st.Message)
	}

	// An exec without a program, and updates the node cannot honour, are
	// refused before the container is touched.
	if _, err := e.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{""}}); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("ExecSync [\"\"]: %v, want InvalidArgument", err)
	}
	for name, r := range map[string]*runtimeapi.LinuxContainerResources{
		"linux.cpuset_cpus":           {CpusetCpus: cpu},
		"linux.memory_limit_in_bytes": {MemoryLimitInBytes: 4096},
		"linux.hugepage_limits":       {HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: pageSize, Limit: 1 << 30}}},
	} {
		_, err := e.d.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: r})
		if grpcCode(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), name) {
			t.Errorf("update %s: %v, want InvalidArgument naming it", name, err)
		}
	}
	st, _ := e.status(t, id)
	if got := st.GetResources().GetLinux().GetMemoryLimitInBytes(); got != spec.MinMemoryLimit {
		t.Errorf("memory limit after refused updates: %d, want %d", got, spec.MinMemoryLimit)
	}
}

// noPods checks that berthd keeps no trace of any pod.
func (e *ctrEnv) noPods(t *testing.T, what string) {
	t.Helper()
	resp, err := e.d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 0 {
		t.Errorf("%s: pods listed: %v %v", what, resp, err)
	}
	// The network of a removed pod is released in the background.
	left := e.leftoversAfter(30*time.Second, filepath.Join(e.d.State, "ns"), fmt.Sprintf("mounts %v", []string{e.d.State}))
	if entries, _ := os.ReadDir(filepath.Join(e.d.State, "pods")); len(entries) != 0 {
		t.Errorf("%s: pods dir holds %d entries", what, len(entries))
	}
	// (A test may put the state dir on a file system of its own.)
	for _, l := range left {
		t.Errorf("%s: left behind: %s", what, l)
	}
}

// noContainerCgroups checks that the pod's cgroup holds no container's.
func (e *ctrEnv) noContainerCgroups(t *testing.T, pod string) {
	t.Helper()
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*" + e.cgroupParent + "/berth-" + pod + "*/*")
	for _, cg := range cgs {
		if fi, err := os.Stat(cg); err == nil && fi.IsDir() && len(filepath.Base(cg)) == 64 {
			t.Errorf("container cgroup left: %s", cg)
		}
	}
}

// TestRunPodSandboxDiskFull: a pod dir on a full file system is
// ResourceExhausted naming the dir, and the pod is undone.
func TestRunPodSandboxDiskFull(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("berth-test", state, "tmpfs", 0, "size=4m,mode=0711"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(state, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", state, err)
		}
	})
	d := n.start(t)
	e := &ctrEnv{podNet: n, d: d}

	// Fill the file system berthd keeps its pod dirs on.
	f, err := os.Create(filepath.Join(state, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v", state, err)
	}

	_, err = d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("full")})
	if grpcCode(err) != codes.ResourceExhausted || !strings.Contains(fmt.Sprint(err), filepath.Join(state, "pods")) {
		t.Errorf("RunPodSandbox on a full disk: %v, want ResourceExhausted naming %s", err, filepath.Join(state, "pods"))
	}
	if err := os.Remove(filepath.Join(state, "filler")); err != nil {
		t.Fatal(err)
	}
	e.noPods(t, "full disk")
	// With room again, the same pod runs.
	removePod(t, d, runPod(t, d, n.podConfig("full")))
}
