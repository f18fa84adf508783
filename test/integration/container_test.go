package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// busyboxRef is the fixture image the container tests run.
const busyboxRef = "docker.io/library/busybox:latest"

// ctrEnv is a berthd with a local registry and its own pod network, and
// busybox pulled.
type ctrEnv struct {
	*podNet
	d *framework.Daemon
}

func newCtrEnv(t *testing.T, extra ...string) *ctrEnv {
	t.Helper()
	return newCtrEnvWith(t, nil, append([]string{"-v", "4"}, extra...)...)
}

// newCtrEnvWith is newCtrEnv with berthd's config.toml made by config
// (given the test's dir; nil: none) and berthd's arguments args.
func newCtrEnvWith(t *testing.T, config func(dir string) string, args ...string) *ctrEnv {
	t.Helper()
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	if config != nil {
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config(dir)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := &ctrEnv{podNet: n, d: n.start(t, args...)}
	// A failed test still removes its pods (and so their containers)
	// before berthd stops.
	t.Cleanup(func() { removePodsOf(t, e.d) })
	if _, err := e.d.Images.PullImage(framework.Context(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}}); err != nil {
		t.Fatalf("pull busybox: %v", err)
	}
	return e
}

// restart starts berthd again on the same dirs (after Kill or Stop).
func (e *ctrEnv) restart(t *testing.T) {
	t.Helper()
	e.d = e.start(t)
}

// pod runs a pod with a log directory.
func (e *ctrEnv) pod(t *testing.T, name string) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	cfg := e.podConfig(name)
	cfg.LogDirectory = filepath.Join(e.dir, "logs", name)
	return runPod(t, e.d, cfg), cfg
}

func ctrConfig(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: busyboxRef},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"ctr": name},
		// The test pods give each container its own PID namespace.
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func (e *ctrEnv) create(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	resp, err := e.d.Runtime.CreateContainer(framework.Context(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
	}
	return resp.ContainerId
}

func (e *ctrEnv) run(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := e.create(t, podID, podCfg, cfg)
	if _, err := e.d.Runtime.StartContainer(framework.Context(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.Metadata.Name, err)
	}
	return id
}

func (e *ctrEnv) status(t *testing.T, id string) (*runtimeapi.ContainerStatus, map[string]any) {
	t.Helper()
	resp, err := e.d.Runtime.ContainerStatus(framework.Context(t), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("status info: %v: %q", err, resp.Info)
	}
	return resp.Status, info
}

// waitState polls until the container is in state, and returns its status.
func (e *ctrEnv) waitState(t *testing.T, id string, state runtimeapi.ContainerState, within time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, _ := e.status(t, id)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %v after %s, want %v (%s %s)", st.Metadata.Name, st.State, within, state, st.Reason, st.Message)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *ctrEnv) execSync(t *testing.T, id string, cmd ...string) *runtimeapi.ExecSyncResponse {
	t.Helper()
	resp, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
	if err != nil {
		t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	return resp
}

// logLines parses a CRI log file into "<stream> <tag> <text>" lines.
func logLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("log: %v", err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), " ", 4)
		if len(parts) != 4 {
			t.Errorf("bad log line %q", s.Text())
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[0]); err != nil {
			t.Errorf("bad log time in %q: %v", s.Text(), err)
		}
		out = append(out, strings.Join(parts[1:], " "))
	}
	return out
}

// nothingLeft checks that berthd keeps no trace of any container: no
// record, no state or layer dir, no rootfs mount.
func (e *ctrEnv) nothingLeft(t *testing.T) {
	t.Helper()
	resp, err := e.d.Runtime.ListContainers(framework.Context(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(resp.Containers) != 0 {
		t.Errorf("containers listed: %v %v", resp, err)
	}
	// A removal cleans up in the background once the container is out of
	// every list: give that a generous while.
	var left []string
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = containerLeftovers(e.d, e.dir)
		if len(left) == 0 || time.Now().After(end) {
			break
		}
	}
	for _, l := range left {
		t.Errorf("left behind: %s", l)
	}
}

// containerLeftovers are the state and layer dirs and rootfs mounts of
// containers of a daemon.
func containerLeftovers(d *framework.Daemon, dir string) []string {
	var left []string
	for _, sub := range []string{filepath.Join(d.State, "containers"), filepath.Join(d.Root, "containers")} {
		if entries, _ := os.ReadDir(sub); len(entries) != 0 {
			left = append(left, fmt.Sprintf("%s holds %d entries", sub, len(entries)))
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(d.Root, "removed-containers")); len(entries) != 0 {
		left = append(left, fmt.Sprintf("%d container tombstones", len(entries)))
	}
	for _, mp := range mountsBelow(dir) {
		if strings.Contains(mp, "/containers/") {
			left = append(left, "mount "+mp)
		}
	}
	return left
}

func TestContainerCrictlLifecycle(t *testing.T) {
	e := newCtrEnv(t)
	podCfg := e.podConfig("crictl-ctr")
	podCfg.LogDirectory = filepath.Join(e.dir, "logs", "crictl-ctr")
	podFile, ctrFile := filepath.Join(e.dir, "pod.json"), filepath.Join(e.dir, "ctr.json")
	b, _ := json.Marshal(podCfg)
	writeFile(t, podFile, string(b))
	cfg := ctrConfig("web", "sh", "-c", "trap 'echo bye; exit 0' TERM; echo hello; echo oops >&2; echo $GREETING; while :; do sleep 0.1; done")
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("from-env")}}
	b, _ = json.Marshal(cfg)
	writeFile(t, ctrFile, string(b))

	pod := lastLine(crictl(t, e.d, "runp", podFile))
	id := lastLine(crictl(t, e.d, "create", pod, ctrFile, podFile))
	if out := crictl(t, e.d, "ps", "-a", "-q", "--state", "created"); !strings.Contains(out, id) {
		t.Errorf("crictl ps --state created: %q", out)
	}
	crictl(t, e.d, "start", id)
	if out := crictl(t, e.d, "ps", "-q", "--label", "ctr=web"); strings.TrimSpace(out) != id {
		t.Errorf("crictl ps --label: %q", out)
	}
	if out := crictl(t, e.d, "ps", "-q", "--id", id[:12]); strings.TrimSpace(out) != id {
		t.Errorf("crictl ps --id prefix: %q", out)
	}
	if out := crictl(t, e.d, "ps", "-q", "--pod", pod); strings.TrimSpace(out) != id {
		t.Errorf("crictl ps --pod: %q", out)
	}
	if out := crictl(t, e.d, "ps", "-q", "--state", "exited"); strings.TrimSpace(out) != "" {
		t.Errorf("crictl ps --state exited: %q", out)
	}

	var insp struct {
		Status struct {
			State    string
			ImageRef string
			LogPath  string
			Metadata struct{ Name string }
		}
		Info struct {
			Pid    int
			Cgroup string
		}
	}
	out := crictl(t, e.d, "inspect", id)
	if err := json.Unmarshal([]byte(out), &insp); err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	if insp.Status.State != "CONTAINER_RUNNING" || insp.Status.Metadata.Name != "web" || !strings.Contains(insp.Status.ImageRef, "@sha256:") ||
		insp.Status.LogPath != filepath.Join(podCfg.LogDirectory, "web.log") || insp.Info.Pid <= 0 {
		t.Errorf("inspect: %+v", insp)
	}
	// The process runs in the pod's cgroup and network namespace.
	pi := inspectPod(t, e.d, pod)
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", insp.Info.Pid)); !strings.Contains(string(cg), pi.Cgroup+"/"+id) {
		t.Errorf("container cgroups:\n%s", cg)
	}
	ctrNet, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", insp.Info.Pid))
	var podNS unix.Stat_t
	_ = unix.Stat(pi.NetNS, &podNS)
	if ctrNet != fmt.Sprintf("net:[%d]", podNS.Ino) {
		t.Errorf("container netns %s, pod's inode %d", ctrNet, podNS.Ino)
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ = e.d.Crictl(t, "logs", id)
		if strings.Contains(out, "from-env") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"hello", "oops", "from-env"} {
		if !strings.Contains(out, want) {
			t.Errorf("crictl logs lacks %q:\n%s", want, out)
		}
	}
	// stdout and stderr are separate pipes: their order is not kept.
	if lines := logLines(t, insp.Status.LogPath); !sameSet(lines, "stdout F hello", "stderr F oops", "stdout F from-env") {
		t.Errorf("log file lines: %q", lines)
	}
	if out, err := e.d.Crictl(t, "exec", "-s", id, "cat", "/etc/hostname"); err != nil || strings.TrimSpace(out) != "crictl-ctr" {
		t.Errorf("exec cat /etc/hostname: %v %q", err, out)
	}

	crictl(t, e.d, "stop", "-t", "5", id)
	st, _ := e.status(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 || st.Reason != "Completed" || st.FinishedAt < st.StartedAt {
		t.Errorf("after stop: %v exit %d %q", st.State, st.ExitCode, st.Reason)
	}
	if unix.Kill(insp.Info.Pid, 0) == nil {
		t.Errorf("process %d alive after stop", insp.Info.Pid)
	}
	crictl(t, e.d, "stop", id) // idempotent
	if out := crictl(t, e.d, "ps", "-q", "--state", "exited"); strings.TrimSpace(out) != id {
		t.Errorf("crictl ps --state exited: %q", out)
	}
	if lines := logLines(t, insp.Status.LogPath); len(lines) != 4 || lines[3] != "stdout F bye" {
		t.Errorf("log after the stop signal: %q", lines)
	}
	crictl(t, e.d, "rm", id)
	if out, err := e.d.Crictl(t, "inspect", id); err == nil {
		t.Errorf("inspect after rm: %s", out)
	}
	if _, err := e.d.Runtime.RemoveContainer(framework.Context(t), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("second remove: %v", err)
	}
	e.nothingLeft(t)
	crictl(t, e.d, "stopp", pod)
	crictl(t, e.d, "rmp", pod)
}

func TestContainerExitCodes(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "exits")
	// No namespace options at all (crictl's usual config): the container
	// follows its pod (own PID namespace here, as the pod shares none).
	okCfg := ctrConfig("ok", "sh", "-c", "exit 0")
	okCfg.Linux = nil
	ok := e.run(t, pod, podCfg, okCfg)
	fail := e.run(t, pod, podCfg, ctrConfig("fail", "sh", "-c", "echo bye; exit 1"))
	oomCfg := ctrConfig("oom", "sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done")
	oomCfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}
	oom := e.run(t, pod, podCfg, oomCfg)

	for _, c := range []struct {
		id     string
		code   int32
		reason string
	}{{ok, 0, "Completed"}, {fail, 1, "Error"}, {oom, 137, "OOMKilled"}} {
		st := e.waitState(t, c.id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		if st.ExitCode != c.code || st.Reason != c.reason || st.FinishedAt == 0 || st.StartedAt == 0 || st.FinishedAt < st.StartedAt {
			t.Errorf("%s: exit %d reason %q started %d finished %d; want %d %q", st.Metadata.Name, st.ExitCode, st.Reason, st.StartedAt, st.FinishedAt, c.code, c.reason)
		}
	}
	st, _ := e.status(t, fail)
	if lines := logLines(t, st.LogPath); len(lines) != 1 || lines[0] != "stdout F bye" {
		t.Errorf("log of fail: %q", lines)
	}
	// A command that cannot run fails CreateContainer (the binary is
	// looked up then) and leaves nothing, or else fails StartContainer and
	// reports why.
	resp, err := e.d.Runtime.CreateContainer(framework.Context(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrConfig("missing", "/no/such/binary"), SandboxConfig: podCfg})
	if err == nil {
		_, err = e.d.Runtime.StartContainer(framework.Context(t), &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId})
		if st, _ := e.status(t, resp.ContainerId); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode == 0 || st.Message == "" {
			t.Errorf("missing binary: %v exit %d reason %q message %q", st.State, st.ExitCode, st.Reason, st.Message)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("run of a missing binary: %v", err)
	}
	// Starting twice is refused.
	if _, err := e.d.Runtime.StartContainer(framework.Context(t), &runtimeapi.StartContainerRequest{ContainerId: ok}); grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("start of an exited container: %v, want FailedPrecondition", err)
	}
	exited := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}
	list, err := e.d.Runtime.ListContainers(framework.Context(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: exited, PodSandboxId: pod}})
	if err != nil || len(list.Containers) < 3 {
		t.Errorf("exited containers: %v %v", list, err)
	}
	// Removing the pod removes its containers.
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}

func TestContainerVolumesAndExec(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "vols")
	rw, ro := filepath.Join(e.dir, "rw"), filepath.Join(e.dir, "ro")
	mkdirs(t, rw, ro)
	writeFile(t, filepath.Join(ro, "data"), "from the host\n")
	cfg := ctrConfig("vol", "sleep", "1000")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/rw", HostPath: rw},
		{ContainerPath: "/ro", HostPath: ro, Readonly: true},
	}
	id := e.run(t, pod, podCfg, cfg)

	if r := e.execSync(t, id, "sh", "-c", "echo written > /rw/out && cat /ro/data"); r.ExitCode != 0 || string(r.Stdout) != "from the host\n" {
		t.Errorf("exec: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("host sees %q, %v", b, err)
	}
	if r := e.execSync(t, id, "sh", "-c", "echo x > /ro/new"); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Read-only") {
		t.Errorf("write to the read-only mount: exit %d stderr %q", r.ExitCode, r.Stderr)
	}
	if r := e.execSync(t, id, "sh", "-c", "echo out; echo err >&2; exit 3"); r.ExitCode != 3 || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" {
		t.Errorf("exec streams: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	// A writable layer of its own.
	e.execSync(t, id, "sh", "-c", "head -c 100000 /dev/zero > /big")
	if _, err := os.Stat(filepath.Join(e.d.Root, "containers", id, "upper", "big")); err != nil {
		t.Errorf("upper dir lacks the container's file: %v", err)
	}
	_, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "10"}, Timeout: 1})
	if grpcCode(err) != codes.DeadlineExceeded {
		t.Errorf("exec past its timeout: %v, want DeadlineExceeded", err)
	}
	script := `for f in /proc/[0-9]*/cmdline; do [ "$(tr '\0' ' ' < $f)" = "sleep 10 " ] && echo found; done; true`
	if r := e.execSync(t, id, "sh", "-c", script); strings.TrimSpace(string(r.Stdout)) != "" {
		t.Errorf("timed-out exec still runs: %q", r.Stdout)
	}

	st, _ := e.status(t, id)
	if len(st.Mounts) != 2 || st.Mounts[1].HostPath != ro || !st.Mounts[1].Readonly {
		t.Errorf("status mounts: %v", st.Mounts)
	}
	stats, err := e.d.Runtime.ContainerStats(framework.Context(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	s := stats.Stats
	if s.Cpu.GetUsageCoreNanoSeconds().GetValue() == 0 || s.Memory.GetWorkingSetBytes().GetValue() == 0 || s.WritableLayer.GetUsedBytes().GetValue() < 100000 || s.WritableLayer.GetInodesUsed().GetValue() == 0 {
		t.Errorf("stats: %v", s)
	}
	list, err := e.d.Runtime.ListContainerStats(framework.Context(t), &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: pod}})
	if err != nil || len(list.Stats) != 1 || list.Stats[0].Attributes.Id != id {
		t.Errorf("list stats: %v %v", list, err)
	}
	// The streaming list calls (CRIListStreaming) give the same.
	sc, err := e.d.Runtime.StreamContainers(framework.Context(t), &runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := sc.Recv(); err != nil || len(msg.Containers) != 1 || msg.Containers[0].Id != id {
		t.Errorf("stream containers: %v %v", msg, err)
	}
	if _, err := sc.Recv(); err != io.EOF {
		t.Errorf("stream containers did not end: %v", err)
	}
	ss, err := e.d.Runtime.StreamContainerStats(framework.Context(t), &runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: id[:8]}})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := ss.Recv(); err != nil || len(msg.ContainerStats) != 1 || msg.ContainerStats[0].Attributes.Id != id {
		t.Errorf("stream container stats: %v %v", msg, err)
	}

	_, err = e.d.Runtime.UpdateContainerResources(framework.Context(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 256}})
	if err != nil {
		t.Fatalf("update resources: %v", err)
	}
	_, info := e.status(t, id)
	limitFile := filepath.Join("/sys/fs/cgroup/memory", info["cgroup"].(string), "memory.limit_in_bytes")
	if _, err := os.Stat(limitFile); err != nil {
		limitFile = filepath.Join("/sys/fs/cgroup", info["cgroup"].(string), "memory.max")
	}
	if b, _ := os.ReadFile(limitFile); strings.TrimSpace(string(b)) != strconv.Itoa(64<<20) {
		t.Errorf("memory limit after update: %q", b)
	}
	if st, _ := e.status(t, id); st.Resources.GetLinux().GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("status resources: %v", st.Resources)
	}

	// The kubelet's log rotation: rename, then reopen makes a new file and
	// the old one stops growing.
	logger := e.run(t, pod, podCfg, ctrConfig("logger", "sh", "-c", "while :; do echo line; sleep 0.05; done"))
	lst, _ := e.status(t, logger)
	waitLines := func(path string, n int) {
		t.Helper()
		const within = time.Minute
		deadline := time.Now().Add(within)
		for {
			b, _ := os.ReadFile(path)
			if strings.Count(string(b), "\n") >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %d lines in %s: %d after %s", n, path, strings.Count(string(b), "\n"), within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLines(lst.LogPath, 2)
	if err := os.Rename(lst.LogPath, lst.LogPath+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.ReopenContainerLog(framework.Context(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: logger}); err != nil {
		t.Fatalf("reopen log: %v", err)
	}
	waitLines(lst.LogPath, 2)
	old, _ := os.ReadFile(lst.LogPath + ".1")
	time.Sleep(300 * time.Millisecond)
	if now, _ := os.ReadFile(lst.LogPath + ".1"); len(now) != len(old) {
		t.Errorf("the rotated log still grows")
	}
	if _, err := e.d.Runtime.StopContainer(framework.Context(t), &runtimeapi.StopContainerRequest{ContainerId: logger}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.ReopenContainerLog(framework.Context(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: logger}); grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("reopen log of a stopped container: %v, want FailedPrecondition", err)
	}
	removePod(t, e.d, pod)
	if _, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}}); grpcCode(err) != codes.NotFound {
		t.Errorf("exec in a removed container: %v, want NotFound", err)
	}
	e.nothingLeft(t)
}

func TestContainerStopKillsEverything(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "stubborn")
	// The shell ignores SIGTERM and has children of its own.
	id := e.run(t, pod, podCfg, ctrConfig("stubborn", "sh", "-c", "trap '' TERM; sleep 1001 & sleep 1002 & while :; do sleep 1; done"))
	_, info := e.status(t, id)
	cg := info["cgroup"].(string)
	procs := filepath.Join("/sys/fs/cgroup/pids", cg, "cgroup.procs")
	if _, err := os.Stat(procs); err != nil {
		procs = filepath.Join("/sys/fs/cgroup", cg, "cgroup.procs") // cgroup v2
	}
	deadline := time.Now().Add(5 * time.Second)
	var pids []string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(procs)
		if pids = strings.Fields(string(b)); len(pids) >= 4 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) < 4 {
		t.Fatalf("container processes: %v", pids)
	}
	start := time.Now()
	if _, err := e.d.Runtime.StopContainer(framework.Context(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if el := time.Since(start); el < time.Second || el > 10*time.Second {
		t.Errorf("stop took %s with a 1s grace period", el)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		if unix.Kill(pid, 0) == nil {
			t.Errorf("process %d alive after stop", pid)
		}
	}
	st, _ := e.status(t, id)
	if st.ExitCode != 137 || st.Reason != "Error" {
		t.Errorf("killed container: exit %d %q", st.ExitCode, st.Reason)
	}
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}

func TestContainerRestartRecovery(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "recover")
	ticker := e.run(t, pod, podCfg, ctrConfig("ticker", "sh", "-c", "while :; do echo tick; sleep 0.1; done"))
	quitter := e.run(t, pod, podCfg, ctrConfig("quitter", "sh", "-c", "sleep 1; exit 3"))
	_, info := e.status(t, ticker)
	pid := int(info["pid"].(float64))
	st, _ := e.status(t, ticker)
	logPath := st.LogPath

	e.d.Kill()
	before := len(logLines(t, logPath))
	time.Sleep(2 * time.Second)
	if unix.Kill(pid, 0) != nil {
		t.Fatalf("container died with berthd")
	}
	if after := len(logLines(t, logPath)); after <= before+5 {
		t.Errorf("no logging while berthd was down: %d lines, then %d", before, after)
	}
	e.restart(t)
	if st, info := e.status(t, ticker); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || int(info["pid"].(float64)) != pid {
		t.Errorf("ticker after restart: %v pid %v", st.State, info["pid"])
	}
	st = e.waitState(t, quitter, runtimeapi.ContainerState_CONTAINER_EXITED, 5*time.Second)
	if st.ExitCode != 3 || st.Reason != "Error" || st.FinishedAt == 0 {
		t.Errorf("quitter after restart: exit %d %q", st.ExitCode, st.Reason)
	}
	// The restarted berthd still controls the survivor.
	if r := e.execSync(t, ticker, "echo", "still here"); string(r.Stdout) != "still here\n" {
		t.Errorf("exec after restart: %q", r.Stdout)
	}
	if _, err := e.d.Runtime.StopContainer(framework.Context(t), &runtimeapi.StopContainerRequest{ContainerId: ticker, Timeout: 5}); err != nil {
		t.Errorf("stop after restart: %v", err)
	}

	// A pod whose shim dies with berthd away: its container is reported
	// exited, and removing it cleans up.
	pod2, podCfg2 := e.pod(t, "orphan")
	orphan := e.run(t, pod2, podCfg2, ctrConfig("orphan", "sleep", "1000"))
	_, info = e.status(t, orphan)
	opid := int(info["pid"].(float64))
	shimPid := inspectPod(t, e.d, pod2).Pid
	e.d.Kill()
	_ = unix.Kill(shimPid, unix.SIGKILL)
	e.restart(t)
	st = e.waitState(t, orphan, runtimeapi.ContainerState_CONTAINER_EXITED, 10*time.Second)
	if st.Message == "" {
		t.Errorf("orphan: exited without a message: %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(opid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if unix.Kill(opid, 0) == nil {
		t.Errorf("orphaned container process %d still runs", opid)
	}
	removePod(t, e.d, pod2)
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}

func TestContainerBadInput(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "bad")
	ctx := framework.Context(t)
	create := func(podID string, cfg *runtimeapi.ContainerConfig) error {
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
		return err
	}
	unknownImage := ctrConfig("x", "true")
	unknownImage.Image.Image = "docker.io/library/not-pulled:1"
	missingHost := ctrConfig("x", "true")
	missingHost.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(e.dir, "does-not-exist")}}
	noName := ctrConfig("", "true")
	for _, c := range []struct {
		name string
		pod  string
		cfg  *runtimeapi.ContainerConfig
		code codes.Code
		msg  string
	}{
		{"unknown pod", "0123456789abcdef", ctrConfig("x", "true"), codes.NotFound, "0123456789abcdef"},
		{"unknown image", pod, unknownImage, codes.NotFound, "not-pulled"},
		{"missing host path", pod, missingHost, codes.InvalidArgument, "does-not-exist"},
		{"no name", pod, noName, codes.InvalidArgument, "name"},
		{"no config", pod, nil, codes.InvalidArgument, "config"},
	} {
		err := create(c.pod, c.cfg)
		if grpcCode(err) != c.code || !strings.Contains(fmt.Sprint(err), c.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.code, c.msg)
		}
		e.nothingLeft(t)
	}
	id := e.create(t, pod, podCfg, ctrConfig("dup", "sleep", "1000"))
	if err := create(pod, ctrConfig("dup", "sleep", "1000")); grpcCode(err) != codes.AlreadyExists {
		t.Errorf("duplicate name: %v, want AlreadyExists", err)
	}
	for name, call := range map[string]func() error{
		"start": func() error {
			_, err := e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: "nope"})
			return err
		},
		"status": func() error {
			_, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "nope"})
			return err
		},
		"stats": func() error {
			_, err := e.d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "nope"})
			return err
		},
	} {
		if err := call(); grpcCode(err) != codes.NotFound {
			t.Errorf("%s of an unknown container: %v, want NotFound", name, err)
		}
	}
	// Stop is idempotent: an unknown container is stopped.
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "nope"}); err != nil {
		t.Errorf("stop of an unknown container: %v", err)
	}
	if _, err := e.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}}); grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("exec in a created container: %v, want FailedPrecondition", err)
	}
	// A stopped pod takes no new container.
	if _, err := e.d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if err := create(pod, ctrConfig("late", "true")); grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("create in a stopped pod: %v, want FailedPrecondition", err)
	}
	if st, _ := e.status(t, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("created container of a stopped pod: %v", st.State)
	}
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.TrimSpace(s[strings.LastIndex(s, "\n")+1:])
}

func sameSet(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for _, w := range want {
		if seen[w] == 0 {
			return false
		}
		seen[w]--
	}
	return true
}

func TestContainerCreateRetried(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "retry")
	cfg := ctrConfig("slow", "sleep", "1000")
	// The first call gives up at once; the create goes on for the retry.
	ctx, cancel := context.WithTimeout(framework.Context(t), time.Millisecond)
	_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
	cancel()
	if grpcCode(err) != codes.DeadlineExceeded {
		t.Logf("first create: %v (finished within its deadline)", err)
	}
	var id string
	const within = 3 * time.Minute
	deadline := time.Now().Add(within)
	for {
		resp, err := e.d.Runtime.CreateContainer(framework.Context(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if err == nil {
			id = resp.ContainerId
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for the retried create to get the first one's container: still %v after %s", err, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	list, err := e.d.Runtime.ListContainers(framework.Context(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != id {
		t.Errorf("containers after the retry: %v %v", list, err)
	}
	// Claimed once: a third create of the name is a duplicate.
	if _, err := e.d.Runtime.CreateContainer(framework.Context(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg}); grpcCode(err) != codes.AlreadyExists {
		t.Errorf("third create: %v, want AlreadyExists", err)
	}
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}

func TestContainerImageVolume(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "imgvol")
	img, err := e.d.Images.ImageStatus(framework.Context(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}})
	if err != nil || img.Image == nil {
		t.Fatalf("image status: %v", err)
	}
	cfg := ctrConfig("vol", "sleep", "1000")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/mnt/img", Readonly: true, Image: &runtimeapi.ImageSpec{Image: busyboxRef}},
		{ContainerPath: "/mnt/etc", Readonly: true, Image: &runtimeapi.ImageSpec{Image: busyboxRef}, ImageSubPath: "etc"},
	}
	id := e.run(t, pod, podCfg, cfg)
	if r := e.execSync(t, id, "/mnt/img/bin/sh", "-c", "ls /mnt/etc/passwd && touch /mnt/img/x"); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "/mnt/etc/passwd") || !strings.Contains(string(r.Stderr), "Read-only") {
		t.Errorf("image volume: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	st, _ := e.status(t, id)
	if len(st.Mounts) != 2 || st.Mounts[0].Image.GetImageRef() != img.Image.Id || st.Mounts[1].ImageSubPath != "etc" {
		t.Errorf("status mounts: %v", st.Mounts)
	}

	for name, m := range map[string]*runtimeapi.Mount{
		"writable":         {ContainerPath: "/mnt/img", Image: &runtimeapi.ImageSpec{Image: busyboxRef}},
		"missing sub path": {ContainerPath: "/mnt/img", Readonly: true, Image: &runtimeapi.ImageSpec{Image: busyboxRef}, ImageSubPath: "no/such"},
		"escaping":         {ContainerPath: "/mnt/img", Readonly: true, Image: &runtimeapi.ImageSpec{Image: busyboxRef}, ImageSubPath: "../.."},
	} {
		bad := ctrConfig("bad", "true")
		bad.Mounts = []*runtimeapi.Mount{m}
		_, err := e.d.Runtime.CreateContainer(framework.Context(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: bad, SandboxConfig: podCfg})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("%s image volume: %v, want InvalidArgument", name, err)
		}
	}
	removePod(t, e.d, pod)
	e.nothingLeft(t)
	// The volumes' leases are gone with the container: the image can go.
	if _, err := e.d.Images.RemoveImage(framework.Context(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Image.Id}}); err != nil {
		t.Errorf("remove image: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.d.Root, "images", "layers")); len(entries) != 0 {
		t.Errorf("layers left after the image was removed: %d", len(entries))
	}
}
