package vm

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/test/framework"
	"github.com/berth-dev/berth/test/framework/testimages"
)

const kubeletNamespace = "vmkubelet"

// kubeletOnService runs the real kubelet standalone (static pods, no API
// server) against the installed berth.service, as a node runs it: the
// service's socket, the systemd cgroup driver of the service's config. A
// static pod's container runs in the kubelet's kubepods.slice and logs
// where the kubelet reads it; removing the manifest stops the pod. The
// kubelet is the one hack/build-kubelet.sh built on the host (test.sh
// passes it in as BERTH_KUBELET).
func kubeletOnService(t *testing.T) {
	bin := os.Getenv("BERTH_KUBELET")
	if msg := os.Getenv("BERTH_KUBELET_BUILD_ERROR"); bin == "" && msg != "" {
		t.Skipf("\n!!!!!!!!!!\n!!! SKIPPED: the kubelet could not be built on the host (hack/build-kubelet.sh), so the installed berth.service was NOT tested with the real kubelet\n!!!!!!!!!!\n%s", msg)
	}
	if bin == "" {
		t.Fatal("BERTH_KUBELET (the kubelet hack/build-kubelet.sh builds) is not set: run through hack/vm/test.sh, which builds it")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("BERTH_KUBELET: %v", err)
	}
	begin := time.Now()
	dir := t.TempDir()
	kd := framework.MakeKubeletDirs(t, dir)
	root, manifests := kd.Root, kd.Manifests
	// The sysctls the kubelet sets on start-up are restored after it, for
	// the later tests of this boot.
	restoreSysctls := framework.SaveKubeletSysctls(t)
	var made []string // node dirs the kubelet makes outside its root
	for _, p := range []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers"} {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			made = append(made, p)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	healthz := l.Addr().(*net.TCPAddr).Port
	l.Close()
	configPath := kd.Write(t, framework.KubeletConfig{Endpoint: serviceEndpoint, CgroupDriver: "systemd", HealthzPort: healthz}, "")
	logFile, err := os.Create(filepath.Join(dir, "kubelet.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := kd.Command(bin, configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubelet: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Errorf("kubelet did not stop within a minute of SIGTERM")
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
	}
	kubeletLog := func() string {
		b, _ := os.ReadFile(logFile.Name())
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		return "\nthe kubelet's log (tail):\n" + strings.Join(lines, "\n") + journal()
	}
	// Registered after TempDir's, so it runs first: the kubelet stopped,
	// whatever pod it left removed, its mounts, slices and dirs gone.
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Log(kubeletLog())
		}
		for _, id := range kubeletPods(t) {
			if out, err := framework.Crictl(serviceEndpoint, "rmp", "-f", id); err != nil {
				t.Errorf("cleanup: crictl rmp -f %s: %v\n%s", id, err, out)
			}
		}
		mounts := mountsUnder(root)
		sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
		for _, mp := range mounts {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", mp, err)
			}
		}
		// the QoS slices the kubelet made through systemd
		if out, err := exec.Command("systemctl", "stop", "kubepods.slice").CombinedOutput(); err != nil {
			t.Errorf("systemctl stop kubepods.slice: %v\n%s", err, out)
		}
		if _, err := os.Stat("/sys/fs/cgroup/kubepods.slice"); !os.IsNotExist(err) {
			t.Errorf("the kubelet's kubepods.slice cgroup left (%v)", err)
		}
		if left := mountsUnder(root); len(left) > 0 {
			t.Errorf("mounts left below the kubelet's root: %v", left)
		}
		restoreSysctls()
		for _, p := range made {
			_ = os.RemoveAll(p)
		}
	})

	wait := func(what string, within time.Duration, cond func() (bool, string)) {
		t.Helper()
		start := time.Now()
		last := ""
		for {
			ok, state := cond()
			if ok {
				t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
				return
			}
			last = state
			select {
			case err := <-done:
				done <- err
				t.Fatalf("kubelet exited (%v) while waiting for %s (last: %s)%s", err, what, last, kubeletLog())
			default:
			}
			// a generous bound on a hang: the guest is emulated
			if time.Since(start) > within {
				t.Fatalf("%s: not within %s (last: %s)%s", what, within, last, kubeletLog())
			}
			time.Sleep(time.Second)
		}
	}
	wait("kubelet healthz", 3*time.Minute, func() (bool, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})

	manifest := filepath.Join(manifests, "ticker.yaml")
	writeString(t, manifest, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: ticker
  namespace: %s
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  containers:
  - name: ticker
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo kubelet-tick $i; sleep 0.5; done"]
`, kubeletNamespace, testimages.BusyboxRef))

	var ctr string
	wait("the static pod's container running", 5*time.Minute, func() (bool, string) {
		ids, out := crictlIDs(t, "ps", "--namespace", kubeletNamespace, "--name", "ticker", "--state", "running", "-q")
		if len(ids) == 1 {
			ctr = ids[0]
		}
		return len(ids) == 1, out
	})
	var logs string
	wait("the container's log through crictl logs", 2*time.Minute, func() (bool, string) {
		out, err := framework.Crictl(serviceEndpoint, "logs", ctr)
		logs = out
		return err == nil && strings.Contains(out, "kubelet-tick 2\n"), fmt.Sprintf("%v: %q", err, out)
	})
	t.Logf("crictl logs %.12s:\n%s", ctr, firstLines(logs, 3))
	// The kubelet reads the same log at its podLogsDir path.
	if m, _ := filepath.Glob(filepath.Join(kd.PodLogs, kubeletNamespace+"_ticker-*", "ticker", "0.log")); len(m) != 1 || !strings.Contains(readString(t, m[0]), "kubelet-tick 1\n") {
		t.Errorf("the container's log is not in the kubelet's podLogsDir: %v", m)
	}
	// The kubelet's and berth's cgroup drivers agree: the container is in a
	// scope below the kubelet's kubepods.slice.
	out, err := framework.Crictl(serviceEndpoint, "inspect", ctr)
	if err != nil {
		t.Fatalf("crictl inspect %s: %v\n%s", ctr, err, out)
	}
	var st struct{ Info struct{ Pid int } }
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Info.Pid <= 0 {
		t.Fatalf("crictl inspect %s: no pid (%v)", ctr, err)
	}
	if cg := readString(t, fmt.Sprintf("/proc/%d/cgroup", st.Info.Pid)); !strings.Contains(cg, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod") {
		t.Errorf("the container's cgroup %q is not below the kubelet's kubepods-besteffort.slice", strings.TrimSpace(cg))
	}
	t.Logf("static pod's container running after %s", time.Since(begin).Round(time.Millisecond))

	// Removing the manifest: the kubelet stops the pod.
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	wait("the kubelet stopped the pod", 3*time.Minute, func() (bool, string) {
		running, out1 := crictlIDs(t, "ps", "--namespace", kubeletNamespace, "--state", "running", "-q")
		ready, out2 := crictlIDs(t, "pods", "--namespace", kubeletNamespace, "--state", "ready", "-q")
		return running != nil && ready != nil && len(running)+len(ready) == 0, fmt.Sprintf("running containers: %s; ready pods: %s", out1, out2)
	})
	// The kubelet's GC would remove the stopped pod within minutes; the
	// test does not wait for it: the kubelet stops, the pod is removed.
	stop()
	for _, id := range kubeletPods(t) {
		if out, err := framework.Crictl(serviceEndpoint, "rmp", "-f", id); err != nil {
			t.Fatalf("crictl rmp -f %s: %v\n%s", id, err, out)
		}
	}
	if left := kubeletPods(t); len(left) > 0 {
		t.Errorf("pods left after removal: %v", left)
	}
	t.Logf("kubelet on the installed service: %s", time.Since(begin).Round(time.Millisecond))
}

// kubeletPods are the sandboxes of the kubelet's static pods.
func kubeletPods(t *testing.T) []string {
	ids, out := crictlIDs(t, "pods", "--namespace", kubeletNamespace, "-q")
	if ids == nil {
		t.Errorf("crictl pods: %s", out)
	}
	return ids
}

// crictlIDs runs a crictl listing with -q: the IDs it printed (not nil
// when it succeeded), less crictl's own log lines, and its whole output.
func crictlIDs(t *testing.T, args ...string) ([]string, string) {
	out, err := framework.Crictl(serviceEndpoint, args...)
	if err != nil {
		return nil, fmt.Sprintf("%v: %s", err, out)
	}
	ids := []string{}
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "time=") {
			ids = append(ids, l)
		}
	}
	return ids, out
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
