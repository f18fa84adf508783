package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
	"github.com/berth-dev/berth/test/framework/testimages"
)

// kubeletBinary is the upstream kubelet hack/build-kubelet.sh builds.
// make sets BERTH_KUBELET (the build is then a make target and a missing
// binary fails the test). Without it the test takes the last one built, or
// builds it itself (minutes when cold) and skips, loudly, only when that
// build fails.
func kubeletBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BERTH_KUBELET"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("BERTH_KUBELET=%s: %v (make kubelet builds it)", p, err)
		}
		return p
	}
	// Where hack/build-kubelet.sh keeps the build of these inputs (a cache
	// dir outside the checkout).
	script := filepath.Join(framework.RepoRoot(), "hack", "build-kubelet.sh")
	path, err := exec.Command("bash", script, "--print-path").Output()
	if err != nil {
		t.Fatalf("%s --print-path: %v", script, err)
	}
	bin := strings.TrimSpace(string(path))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("bash", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("\n!!!!!!!!!!\n!!! SKIPPED: the kubelet could not be built (hack/build-kubelet.sh: %v), so berth was NOT tested with the real kubelet\n!!!!!!!!!!\n%s", err, out)
	}
	return bin
}

// testKubelet is a standalone kubelet (no API server) on a berthd, with its
// root, static pod dir, logs and cgroup root all the test's own.
type testKubelet struct {
	framework.KubeletDirs
	cgroup string // cgroupRoot, e.g. /berth-test-berth-t-123

	cmd  *exec.Cmd
	done chan error
	// log is printed (its tail) when the test fails, and kept in
	// _output/test-logs/<test>/kubelet.log.
	log *framework.TestLog
}

// startKubelet starts the kubelet against d. Its cleanup (registered here,
// so it runs before d stops) stops the kubelet, removes whatever pods it
// left in berthd, unmounts its root dir, removes its cgroups and the
// dirs it made outside the temp dir, and restores the sysctls it set.
func startKubelet(t *testing.T, bin string, d *framework.Daemon, dir, cgroupRoot string) *testKubelet {
	t.Helper()
	k := &testKubelet{
		KubeletDirs: framework.MakeKubeletDirs(t, dir),
		cgroup:      cgroupRoot,
		log:         framework.NewTestLog(t, "kubelet"),
		done:        make(chan error, 1),
	}
	restoreSysctls := framework.SaveKubeletSysctls(t)
	// The device manager's socket dir is a constant of the kubelet, not
	// under --root-dir: remove what of it (and, should podLogsDir or
	// BERTH_KUBELET_CONTAINER_LOGS_DIR not take, of the log dirs) this run made.
	var madeVarLib []string
	for _, p := range []string{"/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/log/pods", "/var/log/containers"} {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			madeVarLib = append(madeVarLib, p)
		}
	}
	cgroupDirs := makeCgroupRoot(t, cgroupRoot)

	t.Cleanup(func() {
		k.stop(t)
		if testing.Verbose() {
			// What the kubelet logged as errors is where berth and the
			// kubelet disagree, even when the test passes.
			for _, l := range strings.Split(k.log.String(), "\n") {
				if strings.HasPrefix(l, "E") {
					t.Logf("kubelet: %s", l)
				}
			}
		}
		removeAllPods(t, d)
		for _, mp := range reverseSorted(mountsBelow(k.Root)) {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", mp, err)
			}
		}
		// The kubelet also makes its kubepods tree in hierarchies the test
		// did not create the root in (the v1 host's unified one).
		made, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupRoot)
		for _, c := range append(cgroupDirs, made...) {
			if err := removeCgroupTree(c); err != nil {
				t.Errorf("remove kubelet cgroups: %v", err)
			}
		}
		restoreSysctls()
		for _, p := range madeVarLib {
			if err := os.RemoveAll(p); err != nil {
				t.Errorf("remove %s: %v", p, err)
			}
		}
	})

	healthz := freePort(t)
	extra := ""
	if os.Getenv("BERTH_KUBELET_EVENTED_PLEG") == "1" {
		// The evented PLEG (alpha) follows GetContainerEvents in place of
		// relisting every second.
		extra = "featureGates:\n  EventedPLEG: true\n"
	}
	configPath := k.Write(t, framework.KubeletConfig{
		Endpoint: d.Endpoint, CgroupDriver: "cgroupfs", CgroupRoot: cgroupRoot, HealthzPort: int(healthz),
	}, extra)
	k.cmd = k.Command(bin, configPath)
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("start kubelet: %v", err)
	}
	go func() { k.done <- k.cmd.Wait() }()

	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz)
	kubeletWait(t, k, "kubelet healthz", 3*time.Minute, func(ctx context.Context) (bool, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err.Error()
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return k
}

func (k *testKubelet) stop(t *testing.T) {
	if k.cmd == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(time.Minute):
		t.Errorf("kubelet did not stop within a minute of SIGTERM")
		_ = k.cmd.Process.Kill()
		<-k.done
	}
	k.cmd = nil
}

// kubeletWait polls cond until it holds or within passes; it fails the
// test early when the kubelet exits. within bounds a hang of the step
// (what), not its speed: cond's calls get a context that ends with it, so
// that no step eats another's time.
func kubeletWait(t *testing.T, k *testKubelet, what string, within time.Duration, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	t.Logf("waiting up to %s for %s", within, what)
	start := time.Now()
	deadline := start.Add(within)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	last := ""
	for {
		ok, state := cond(ctx)
		if ok {
			t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if ctx.Err() == nil || last == "" {
			last = state // not the call cut short by the deadline
		}
		select {
		case err := <-k.done:
			k.done <- err
			t.Fatalf("kubelet exited (%v) while waiting for %s (last: %s); its log follows", err, what, last)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s (last: %s); the kubelet's and berthd's logs follow", what, within, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// makeCgroupRoot creates the kubelet's cgroupRoot in every cgroup v1
// hierarchy (the kubelet insists it exists) and returns the dirs made.
func makeCgroupRoot(t *testing.T, cgroupRoot string) []string {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir := filepath.Join("/sys/fs/cgroup", cgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The kubelet's kubepods below it needs the controllers delegated.
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers")); err == nil {
			for _, c := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0o644)
			}
		}
		return []string{dir}
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, e := range entries {
		if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 || e.Name() == "unified" {
			continue
		}
		dir := filepath.Join("/sys/fs/cgroup", e.Name(), cgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			t.Fatalf("create cgroup root: %v", err)
		}
		made = append(made, dir)
		if e.Name() == "cpuset" {
			// A new cpuset cgroup starts with no CPUs and no memory nodes.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", f))
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
				}
				if err != nil {
					t.Fatalf("cpuset of cgroup root: %v", err)
				}
			}
		}
	}
	return made
}

// removeCgroupTree removes dir and every cgroup below it, deepest first.
func removeCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var errs []string
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Rmdir(dirs[i]); err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Sprintf("%s: %v", dirs[i], err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rmdir %s", strings.Join(errs, "; "))
	}
	return nil
}

// cgroupsBelow lists the cgroups below the kubelet's cgroupRoot whose name
// starts with one of prefixes (pod<uid> of the kubelet, berth-* of berth).
func cgroupsBelow(cgroupRoot string, prefixes ...string) []string {
	var out []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupRoot)
	for _, r := range roots {
		_ = filepath.WalkDir(r, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() || p == r {
				return nil
			}
			for _, pre := range prefixes {
				if strings.HasPrefix(e.Name(), pre) {
					out = append(out, p)
				}
			}
			return nil
		})
	}
	return out
}

func reverseSorted(s []string) []string {
	sort.Sort(sort.Reverse(sort.StringSlice(s)))
	return s
}

// removeAllPods stops and removes every pod berthd has, so that a failed
// test leaves nothing running behind the kubelet.
func removeAllPods(t *testing.T, d *framework.Daemon) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("list pods for cleanup: %v", err)
		return
	}
	for _, p := range pods.Items {
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("cleanup: stop pod %s: %v", p.Id, err)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("cleanup: remove pod %s: %v", p.Id, err)
		}
	}
}

// staticPodManifest is a pod of two busybox containers sharing an emptyDir:
// the writer leaves a file the reader sees, and an exec liveness probe of
// the writer records every run in the shared dir.
func staticPodManifest(name, namespace string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  hostUsers: false
  volumes:
  - name: shared
    emptyDir: {}
  containers:
  - name: writer
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo written-by-writer > /shared/msg && exec sleep 3600"]
    volumeMounts:
    - name: shared
      mountPath: /shared
    livenessProbe:
      exec:
        command: ["sh", "-c", "test -f /shared/msg && echo probe >> /shared/probes"]
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
  - name: reader
    image: %s
    command: ["sh", "-c", "exec sleep 3600"]
    volumeMounts:
    - name: shared
      mountPath: /shared
`, name, namespace, testimages.BusyboxRef, testimages.BusyboxRef)
}

// TestKubeletStaticPod drives berthd with the real kubelet (standalone, no
// API server) through a static pod's life: it runs in a user namespace of
// its own (hostUsers: false), its containers share an
// emptyDir, its liveness probe passes, a killed container is restarted, and
// removing the manifest removes everything.
func TestKubeletStaticPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := kubeletBinary(t)
	begin := time.Now()

	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	reg := framework.StartRegistry(t)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	d := n.start(t)
	k := startKubelet(t, bin, d, filepath.Join(dir, "kubelet"), n.cgroupParent)
	t.Logf("kubelet healthy after %s", time.Since(begin).Round(time.Millisecond))

	namespace := "kt-" + strings.TrimPrefix(filepath.Base(dir), "berth-t-")
	manifest := filepath.Join(k.Manifests, "shared.yaml")
	if err := os.WriteFile(manifest, []byte(staticPodManifest("shared", namespace)), 0o644); err != nil {
		t.Fatal(err)
	}

	// Each step has its own deadline (kubeletWait's, or a call's own):
	// one for the whole test ran out while its steps were still in time.
	containers := func(ctx context.Context) ([]*runtimeapi.Container, error) {
		resp, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			return nil, fmt.Errorf("ListContainers: %w", err)
		}
		return resp.Containers, nil
	}
	// running is the running container of that name and every attempt seen.
	running := func(ctx context.Context, name string) (*runtimeapi.Container, []uint32) {
		var run *runtimeapi.Container
		var attempts []uint32
		cs, err := containers(ctx)
		if err != nil {
			t.Logf("looking for a running %s: %v", name, err)
		}
		for _, c := range cs {
			if c.Metadata.GetName() != name {
				continue
			}
			attempts = append(attempts, c.Metadata.GetAttempt())
			if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && (run == nil || c.Metadata.GetAttempt() > run.Metadata.GetAttempt()) {
				run = c
			}
		}
		return run, attempts
	}
	summary := func(ctx context.Context) string {
		cs, err := containers(ctx)
		if err != nil {
			return err.Error()
		}
		var s []string
		for _, c := range cs {
			s = append(s, fmt.Sprintf("%s#%d %s", c.Metadata.GetName(), c.Metadata.GetAttempt(), c.State))
		}
		return strings.Join(s, ", ")
	}

	// 1. The pod runs: a ready sandbox of the static pod, both containers
	// running.
	var podID string
	kubeletWait(t, k, "step 1: the static pod running", 5*time.Minute, func(ctx context.Context) (bool, string) {
		pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return false, err.Error()
		}
		podID = ""
		for _, p := range pods.Items {
			if p.Metadata.GetNamespace() == namespace && p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
				podID = p.Id
			}
		}
		w, _ := running(ctx, "writer")
		r, _ := running(ctx, "reader")
		return podID != "" && w != nil && r != nil, fmt.Sprintf("pod %q, containers: %s", podID, summary(ctx))
	})
	t.Logf("static pod running after %s", time.Since(begin).Round(time.Millisecond))
	ctx := framework.Context(t) // for the calls between the waits: a fresh one per step
	if logs, _ := filepath.Glob(filepath.Join(k.PodLogs, namespace+"_shared-*", "writer", "0.log")); len(logs) != 1 {
		t.Errorf("writer's log is not in the kubelet's podLogsDir: %v", logs)
	}
	pod, err := d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("step 1: PodSandboxStatus: %v", err)
	}
	if got := pod.Status.Metadata.GetName(); !strings.HasPrefix(got, "shared-") {
		t.Errorf("sandbox name %q: want the static pod's name, shared-<node>", got)
	}
	if ip := pod.Status.GetNetwork().GetIp(); ip == "" {
		t.Errorf("static pod has no IP from CNI: %v", pod.Status)
	}

	// The pod has its own user namespace (hostUsers: false): its root is
	// not the node's, and owns the emptyDir (an id-mapped mount).
	if o := pod.Status.GetLinux().GetNamespaces().GetOptions().GetUsernsOptions(); o.GetMode() != runtimeapi.NamespaceMode_POD || len(o.GetUids()) != 1 || o.GetUids()[0].GetHostId() == 0 {
		t.Errorf("static pod with hostUsers: false: user namespace options %v", o)
	}
	reader, _ := running(ctx, "reader")
	if reader == nil {
		t.Fatalf("step 1: the reader is no longer running: %s", summary(ctx))
	}
	if out, err := d.Crictl(t, "exec", reader.Id, "sh", "-c", "cat /proc/self/uid_map; stat -c %u /shared"); err != nil || len(strings.Fields(out)) != 4 || strings.Fields(out)[1] == "0" || strings.Fields(out)[3] != "0" {
		t.Errorf("reader's uid map and emptyDir owner: %v: %q", err, out)
	}

	// 2. The reader sees what the writer wrote into the emptyDir.
	kubeletWait(t, k, "step 2: the reader sees the writer's file", 3*time.Minute, func(context.Context) (bool, string) {
		out, err := d.Crictl(t, "exec", reader.Id, "cat", "/shared/msg")
		return err == nil && strings.TrimSpace(out) == "written-by-writer", fmt.Sprintf("%v: %s", err, out)
	})

	// 3. The liveness probe runs (through ExecSync) and passes: its runs
	// pile up in the shared dir and the writer is never restarted.
	probeRuns := func() int {
		out, err := d.Crictl(t, "exec", reader.Id, "cat", "/shared/probes")
		if err != nil {
			return 0
		}
		return strings.Count(out, "probe")
	}
	ctx = framework.Context(t)
	writer, _ := running(ctx, "writer")
	if writer == nil {
		t.Fatalf("step 3: the writer is no longer running: %s", summary(ctx))
	}
	kubeletWait(t, k, "step 3: five liveness probe runs", 3*time.Minute, func(context.Context) (bool, string) {
		n := probeRuns()
		return n >= 5, fmt.Sprintf("%d runs", n)
	})
	if w, attempts := running(ctx, "writer"); w == nil || w.Id != writer.Id || len(attempts) != 1 {
		t.Errorf("step 3: writer restarted while its liveness probe passed: %s", summary(ctx))
	}

	// 4. A killed container is restarted: a new container of the next
	// attempt runs.
	ctx = framework.Context(t)
	st, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: reader.Id, Verbose: true})
	if err != nil {
		t.Fatalf("step 4: status of the reader: %v", err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("pid of the reader from its verbose status (%v): %v", err, st.Info)
	}
	if err := unix.Kill(info.Pid, unix.SIGKILL); err != nil {
		t.Fatalf("kill reader pid %d: %v", info.Pid, err)
	}
	killed := time.Now()
	kubeletWait(t, k, "step 4: the killed reader restarted", 4*time.Minute, func(ctx context.Context) (bool, string) {
		r, _ := running(ctx, "reader")
		return r != nil && r.Id != reader.Id && r.Metadata.GetAttempt() == reader.Metadata.GetAttempt()+1, summary(ctx)
	})
	t.Logf("reader restarted %s after the kill", time.Since(killed).Round(time.Millisecond))
	ctx = framework.Context(t)
	if old, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: reader.Id}); err == nil {
		if s := old.Status; s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 137 {
			t.Errorf("killed reader: state %s exit code %d, want EXITED 137", s.State, s.ExitCode)
		}
	} // the kubelet may already have removed the dead container
	newReader, _ := running(ctx, "reader")
	if newReader == nil {
		t.Fatalf("step 4: the restarted reader is no longer running: %s", summary(ctx))
	}
	if out, err := d.Crictl(t, "exec", newReader.Id, "cat", "/shared/msg"); err != nil || strings.TrimSpace(out) != "written-by-writer" {
		t.Errorf("restarted reader does not see the emptyDir's file: %v: %s", err, out)
	}

	// 5. Removing the manifest removes the pod, and the kubelet's container
	// GC (every minute) removes its containers and sandbox: nothing is left.
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	kubeletWait(t, k, "step 5: the pod and its containers removed", 5*time.Minute, func(ctx context.Context) (bool, string) {
		pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return false, err.Error()
		}
		cs, err := containers(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0 && len(cs) == 0, fmt.Sprintf("%d pods, containers: %s", len(pods.Items), summary(ctx))
	})
	t.Logf("pod removed %s after its manifest", time.Since(removed).Round(time.Millisecond))
	kubeletWait(t, k, "step 5: nothing left of the pod", 2*time.Minute, func(context.Context) (bool, string) {
		var left []string
		for _, l := range n.leftovers(true) {
			if !strings.HasPrefix(l, "mounts ") { // checked below
				left = append(left, l)
			}
		}
		for _, mp := range mountsBelow(dir) {
			// berthd's netns pin dir, the kubelet's rshared bind mount of its root
			if mp != filepath.Join(dir, "state", "ns") && mp != k.Root {
				left = append(left, "mount "+mp)
			}
		}
		if cgs := cgroupsBelow(k.cgroup, "pod", "berth-"); len(cgs) > 0 {
			left = append(left, fmt.Sprintf("cgroups %v", cgs))
		}
		if entries, _ := os.ReadDir(filepath.Join(k.Root, "pods")); len(entries) > 0 {
			left = append(left, fmt.Sprintf("%d pod dirs in the kubelet's root", len(entries)))
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
	t.Logf("whole kubelet test: %s", time.Since(begin).Round(time.Millisecond))
}
