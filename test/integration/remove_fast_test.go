package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// holdCleanup keeps berthd's background cleanup from running: what a crash
// right after a fast removal returned would leave (berthd's hidden,
// test-only --test-hooks flag).
var holdCleanup = []string{"--test-hooks", "hold-cleanup"}

// holdRelease keeps berthd from releasing a stopped pod's network.
var holdRelease = []string{"--test-hooks", "hold-net-release"}

// waitGone polls until none of paths exists and no mount is at or below
// them; it reports what is left after within.
func waitGone(t *testing.T, within time.Duration, paths ...string) {
	t.Helper()
	var left []string
	for end := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for _, p := range paths {
			if _, err := os.Lstat(p); err == nil {
				left = append(left, p)
			}
			left = append(left, mountsBelow(p)...)
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("left after %s: %v", within, left)
	}
}

// A removed container is gone from every list and its name is free when
// RemoveContainer returns, while its files are cleaned up in the
// background; berthd killed before that cleanup finishes it at its next
// start: no mount, dir, cgroup or image lease leaks. A pod's removal
// cleans its containers up itself.
func TestContainerRemoveCrashSafe(t *testing.T) {
	e := newCtrEnv(t, holdCleanup...)
	ctx := framework.Context(t)
	pod, podCfg := e.pod(t, "rmfast")
	id := e.run(t, pod, podCfg, ctrConfig("victim", "sleep", "1000"))
	_, info := e.status(t, id)
	paths := []string{info["stateDir"].(string), info["layerDir"].(string)}
	cgroup := info["cgroup"].(string)
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); grpcCode(err) != codes.NotFound {
		t.Errorf("status after remove: %v, want NotFound", err)
	}
	list, err := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Errorf("listed after remove: %v %v", list, err)
	}
	// The cleanup is held: the files are still there, the removal is not
	// in the database yet (a tombstone holds it), and the name is free.
	tomb := filepath.Join(e.d.Root, "removed-containers", id)
	if _, err := os.Stat(tomb); err != nil {
		t.Fatalf("no tombstone (%v): the test does not test the crash", err)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("cleanup was not deferred (%v): the test does not test the crash", err)
		}
	}
	// The empty cgroup may wait for the cleanup; no process may.
	if pids := cgroupProcs(cgroup); len(pids) > 0 {
		t.Errorf("processes of a removed container still in its cgroup: %v", pids)
	}
	again := e.run(t, pod, podCfg, ctrConfig("victim", "sleep", "1000"))
	_, info2 := e.status(t, again)
	paths2 := []string{info2["stateDir"].(string), info2["layerDir"].(string)}
	cgroup2 := info2["cgroup"].(string)
	// A running container's removal ends its process before it returns.
	pid := int(info2["pid"].(float64))
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: again}); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Errorf("process %d of a removed running container still runs", pid)
	}
	if pids := cgroupProcs(cgroup2); len(pids) > 0 {
		t.Errorf("processes of a removed running container still in its cgroup: %v", pids)
	}
	// A third takes the name the removals freed; it keeps it across the
	// crash, which must not bring back the two removed.
	keeper := e.run(t, pod, podCfg, ctrConfig("victim", "sleep", "1000"))

	e.d.Kill()
	e.restart(t)
	list, err = e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != keeper {
		t.Errorf("listed after the crash: %v %v, want only %s", list, err, keeper)
	}
	for _, gone := range []string{id, again} {
		if _, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: gone}); grpcCode(err) != codes.NotFound {
			t.Errorf("status of %s after the crash: %v, want NotFound", gone, err)
		}
	}
	if _, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrConfig("victim", "true"), SandboxConfig: podCfg}); grpcCode(err) != codes.AlreadyExists {
		t.Errorf("create with the name %s holds after the crash: %v, want AlreadyExists", keeper, err)
	}
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: keeper}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 30*time.Second, append(append(paths, paths2...), append(cgroupDirs(cgroup), cgroupDirs(cgroup2)...)...)...)
	e.nothingLeft(t)

	// Removing the pod finishes the cleanups of its containers, even held.
	e.d.Kill()
	e.d = e.start(t, holdCleanup...)
	third := e.run(t, pod, podCfg, ctrConfig("third", "sleep", "1000"))
	_, info3 := e.status(t, third)
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: third}); err != nil {
		t.Fatal(err)
	}
	removePod(t, e.d, pod)
	for _, p := range []string{info3["stateDir"].(string), info3["layerDir"].(string)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left after the pod's removal", p)
		}
	}
	e.nothingLeft(t)
	// No image lease was left: the image's layers go with it.
	if _, err := e.d.Images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.d.Root, "images", "layers")); len(ents) != 0 {
		names := make([]string, 0, len(ents))
		for _, d := range ents {
			names = append(names, d.Name())
		}
		slices.Sort(names)
		t.Errorf("image layers kept after every container and the image went: %v", names)
	}
}

// cgroupDirs are a cgroup's dirs in every hierarchy there is.
func cgroupDirs(cgroup string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroup)
	return append(dirs, "/sys/fs/cgroup"+cgroup)
}

// cgroupProcs lists the processes in a cgroup, in any hierarchy.
func cgroupProcs(cgroup string) []string {
	var pids []string
	for _, d := range cgroupDirs(cgroup) {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		pids = append(pids, strings.Fields(string(b))...)
	}
	return pids
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// A zombie waits for its reaper; it runs no more.
	s := string(b)
	for i := len(s) - 1; i > 0; i-- {
		if s[i] == ')' {
			return len(s) > i+2 && s[i+2] != 'Z'
		}
	}
	return true
}

// A pod's network is released (CNI DEL) after StopPodSandbox returned, its
// netns pinned until then; berthd killed before the release runs releases
// it at its next start, whether the pod was only stopped or also removed:
// no veth, IP, iptables rule (ipMasq) or pin is left.
func TestPodNetworkReleaseCrashSafe(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	n.writeConf(t, strings.Replace(n.conflist(), `"ipMasq":false`, `"ipMasq":true`, 1))
	d := n.start(t, holdRelease...)
	ctx := framework.Context(t)
	stopped := runPod(t, d, n.podConfig("stopped"))
	removed := runPod(t, d, n.podConfig("removed"))
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: stopped}); err != nil {
		t.Fatal(err)
	}
	removePod(t, d, removed)
	if st := inspectPod(t, d, stopped).status.State; st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("stopped pod: %v, want NotReady", st)
	}
	// Held: both pods' networks are still attached (the test tests the crash).
	if allocs := ipamAllocations(filepath.Join(n.ipamDir, n.bridge)); len(allocs) != 2 {
		t.Fatalf("IPs allocated with the release held: %v, want 2", allocs)
	}
	if out, _ := exec.Command("iptables-save", "-t", "nat").Output(); !strings.Contains(string(out), n.bridge) {
		t.Fatalf("no masquerade rules of %s with the release held", n.bridge)
	}

	d.Kill()
	d = n.start(t)
	// The stopped pod keeps its cgroup until it is removed.
	if left := n.leftoversAfter(30*time.Second, filepath.Join(d.State, "ns"), "cgroups "); len(left) > 0 {
		t.Errorf("after restart: %v", left)
	}
	resp, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 1 || resp.Items[0].Id != stopped {
		t.Errorf("pods after restart: %v %v, want only %s", resp, err, stopped)
	}
	removePod(t, d, stopped)
	// Without a hold, and with berthd stopping normally right after a
	// stop: berthd waits for the release.
	id := runPod(t, d, n.podConfig("last"))
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(t); err != nil {
		t.Errorf("berthd stop: %v", err)
	}
	if allocs := ipamAllocations(filepath.Join(n.ipamDir, n.bridge)); len(allocs) != 0 {
		t.Errorf("IP allocated after berthd stopped: %v", allocs)
	}
	d = n.start(t)
	removePod(t, d, id)
}

// A pod recreated with the host port of a pod just stopped gets the
// port's traffic: its CNI ADD waits for the stopped pod's release, which
// runs after StopPodSandbox returned.
func TestPodHostPortAfterStop(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	d := n.start(t)
	ctx := framework.Context(t)
	port := func(name string) *runtimeapi.PodSandboxConfig {
		cfg := n.podConfig(name)
		cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: n.hostPort, HostIp: n.gateway}}
		return cfg
	}
	for i, name := range []string{"first", "second", "third"} {
		id := runPod(t, d, port(name))
		listenIn(t, inspectPod(t, d, id).NetNS, "0.0.0.0:8080", "hello from "+name)
		got, err := readFrom(func() (net.Conn, error) {
			return net.DialTimeout("tcp4", net.JoinHostPort(n.gateway, strconv.Itoa(int(n.hostPort))), 5*time.Second)
		})
		if err != nil || got != "hello from "+name {
			t.Errorf("pod %d: hostPort %d answered %q, %v", i, n.hostPort, got, err)
		}
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
		defer removePod(t, d, id)
	}
}
