package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// shimExe is the executable the pod's shim process runs now.
func shimExe(t *testing.T, pid int) string {
	t.Helper()
	// Briefly unreadable while the process is inside an execve.
	var exe string
	var err error
	for range 100 {
		if exe, err = os.Readlink(filepath.Join("/proc", itoa(pid), "exe")); err == nil {
			return filepath.Base(exe)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("shim %d: %v", pid, err)
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }

// waitShimExe waits until the pod's shim process runs the executable name.
func waitShimExe(t *testing.T, pid int, name string) {
	t.Helper()
	const within = time.Minute
	deadline := time.Now().Add(within)
	for shimExe(t, pid) != name {
		if time.Now().After(deadline) {
			t.Fatalf("shim %d runs %s after %s, want %s", pid, shimExe(t, pid), within, name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShimMonitorHandOff: an idle pod's shim becomes berth-mon in the same
// process (docs/design.md, "The C monitor"); the log goes on across the
// switch, an exec the monitor does not serve brings the Go shim back, an
// exit while demoted is
// reported with its code, and log reopening works on the monitor.
func TestShimMonitorHandOff(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "mon")
	shimPid := inspectPod(t, e.d, pod).Pid
	if shimPid <= 1 {
		t.Fatalf("pod's shim pid %d", shimPid)
	}
	// Writes "before" lines at once, then a line whenever /tmp/go
	// appears, and exits 7 when /tmp/stop does.
	script := `echo before-1; echo -n before-2; echo " done"; echo err-before >&2
n=0
while [ ! -e /tmp/stop ]; do
  if [ -e /tmp/go ]; then
    n=$((n+1)); echo after-$n; echo err-after-$n >&2; rm /tmp/go
    if [ $n = 2 ]; then head -c 20000 /dev/zero | tr '\0' x; echo; printf 'crlf\r\n'; fi
  fi
  sleep 0.05
done
echo bye; exit 7`
	cfg := ctrConfig("talker", "sh", "-c", script)
	cfg.LogPath = "talker/0.log" // the kubelet's layout: a dir per container
	id := e.run(t, pod, podCfg, cfg)
	st, _ := e.status(t, id)
	waitShimExe(t, shimPid, "berth-mon")
	if got := inspectPod(t, e.d, pod).Pid; got != shimPid {
		t.Fatalf("shim pid changed: %d, was %d", got, shimPid)
	}
	// Status and state served by berth-mon (it stays berth-mon).
	if s, _ := e.status(t, id); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("state while demoted: %v", s.State)
	}
	if exe := shimExe(t, shimPid); exe != "berth-mon" {
		t.Errorf("a status promoted the shim: it runs %s", exe)
	}

	// An exec with a non-ASCII argument promotes (berth-mon serves the
	// others); its output is right and the shim demotes again.
	if r := e.execSync(t, id, "sh", "-c", "touch /tmp/go; echo exec-out \u00e9"); strings.TrimSpace(string(r.Stdout)) != "exec-out \u00e9" || r.ExitCode != 0 {
		t.Fatalf("exec after demotion: %q exit %d", r.Stdout, r.ExitCode)
	}
	waitShimExe(t, shimPid, "berth-mon")
	waitLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			for _, l := range logLines(t, st.LogPath) {
				if l == want {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q: %q", want, logLines(t, st.LogPath))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLog("stdout F after-1")
	waitLog("stderr F err-after-1")

	// The kubelet's rotation while demoted: the monitor reopens the file.
	if err := os.Rename(st.LogPath, st.LogPath+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.ReopenContainerLog(framework.Context(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatalf("reopen log: %v", err)
	}
	if exe := shimExe(t, shimPid); exe != "berth-mon" {
		t.Errorf("reopen-log promoted the shim: it runs %s", exe)
	}
	// The next line is written by the monitor into the new file (a file
	// made in the container: no exec, which would promote).
	rootfs := filepath.Join("/proc", itoa(int(inspectPid(t, e, id))), "root", "tmp")
	if err := os.WriteFile(filepath.Join(rootfs, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog("stdout F after-2")
	// Written by berth-mon: split at 16 KiB and "\r\n" dropped whole, as
	// runtime/crilog does.
	waitLog("stdout P " + strings.Repeat("x", 16384))
	waitLog("stdout F " + strings.Repeat("x", 20000-16384))
	waitLog("stdout F crlf")
	if exe := shimExe(t, shimPid); exe != "berth-mon" {
		t.Errorf("logging promoted the shim: it runs %s", exe)
	}

	// The container exits while demoted: the code is reported.
	if err := os.WriteFile(filepath.Join(rootfs, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	end := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, time.Minute)
	if end.ExitCode != 7 || end.Reason != "Error" {
		t.Errorf("exit while demoted: code %d reason %q, want 7 Error", end.ExitCode, end.Reason)
	}
	waitLog("stdout F bye")
	old := logLines(t, st.LogPath+".1")
	want := []string{"stdout F before-1", "stdout F before-2 done", "stderr F err-before", "stdout F after-1", "stderr F err-after-1"}
	for _, w := range want {
		found := false
		for _, l := range old {
			found = found || l == w
		}
		if !found {
			t.Errorf("rotated log lacks %q: %q", w, old)
		}
	}
	// crictl reads both parts of the log as the kubelet would.
	if out := crictl(t, e.d, "logs", id); !strings.Contains(out, "after-2") || !strings.Contains(out, "bye") {
		t.Errorf("crictl logs: %q", out)
	}
	// The demoted shim still tears the pod down.
	waitShimExe(t, shimPid, "berth-mon")
	removePod(t, e.d, pod)
	if _, err := os.Stat(filepath.Join("/proc", itoa(shimPid))); err == nil {
		if exe, _ := os.Readlink(filepath.Join("/proc", itoa(shimPid), "exe")); strings.Contains(exe, "berth") {
			t.Errorf("shim %d still runs after the pod's removal", shimPid)
		}
	}
	e.nothingLeft(t)
}

// inspectPid is the container's pid from its verbose status.
func inspectPid(t *testing.T, e *ctrEnv, id string) float64 {
	t.Helper()
	_, info := e.status(t, id)
	pid, ok := info["pid"].(float64)
	if !ok || pid <= 1 {
		t.Fatalf("container %s pid: %v", id, info["pid"])
	}
	return pid
}

// TestShimMonitorCrash: berth-mon dying ends its own pod's shim only;
// berthd reports that pod NotReady as for a Go shim that died, and the
// other pod goes on.
func TestShimMonitorCrash(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "mon-crash")
	other, otherCfg := e.pod(t, "mon-other")
	e.run(t, pod, podCfg, ctrConfig("a", "sleep", "3600"))
	keep := e.run(t, other, otherCfg, ctrConfig("b", "sleep", "3600"))
	shimPid, otherPid := inspectPod(t, e.d, pod).Pid, inspectPod(t, e.d, other).Pid
	if shimPid <= 1 || otherPid <= 1 {
		t.Fatalf("shim pids %d %d", shimPid, otherPid)
	}
	waitShimExe(t, shimPid, "berth-mon")
	waitShimExe(t, otherPid, "berth-mon")
	if err := unix.Kill(shimPid, unix.SIGSEGV); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for inspectPod(t, e.d, pod).status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		if time.Now().After(deadline) {
			t.Fatalf("pod with a crashed berth-mon is still %v", inspectPod(t, e.d, pod).status.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := inspectPod(t, e.d, other).status.State; st != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("the other pod: %v", st)
	}
	// The other pod's demoted shim still serves an exec.
	if r := e.execSync(t, keep, "echo", "alive"); strings.TrimSpace(string(r.Stdout)) != "alive" {
		t.Errorf("exec in the other pod: %q", r.Stdout)
	}
	removePod(t, e.d, pod)
	removePod(t, e.d, other)
	e.nothingLeft(t)
}

// napWait is the idle wait that preceded the hand-off of the shim at pid,
// now berth-mon: what the Go shim put in its environment for the way back.
// Right after the execve the process already shows berth-mon as its exe
// while the kernel has not yet set up its environment (environ reads
// empty), so it is read again until the nap shows.
func napWait(t *testing.T, pid int) time.Duration {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "environ"))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, "_BERTH_SHIM_NAP="); ok {
				wait, _, _ := strings.Cut(v, ":")
				n, err := strconv.ParseInt(wait, 10, 64)
				if err != nil {
					t.Fatalf("shim %d: nap %q", pid, v)
				}
				return time.Duration(n)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("shim %d has no nap in its environment (%d bytes): runs %s", pid, len(b), shimExe(t, pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShimMonitorBackOff: a shim woken soon after its hand-off to
// berth-mon waits twice as long before the next one (up to
// shim_idle_monitor_max), so that a pod woken every few seconds for an op
// berth-mon does not serve stops paying a Go start each time.
func TestShimMonitorBackOff(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "backoff")
	shimPid := inspectPod(t, e.d, pod).Pid
	if shimPid <= 1 {
		t.Fatalf("pod's shim pid %d", shimPid)
	}
	id := e.run(t, pod, podCfg, ctrConfig("sleeper", "sleep", "1000"))
	waitShimExe(t, shimPid, "berth-mon")
	// Usually the configured 2s; more when a busy machine let the shim go
	// idle between the pod's start and the container's (a short nap too).
	first := napWait(t, shimPid)
	if first < 2*time.Second || first > 30*time.Second {
		t.Fatalf("first hand-off after %v, want the configured 2s (or a few doublings)", first)
	}
	// berth-mon takes only ASCII in a request: this exec promotes.
	if r := e.execSync(t, id, "echo", "\u00e9"); r.ExitCode != 0 {
		t.Fatalf("exec: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	waitShimExe(t, shimPid, "berth-mon")
	if w := napWait(t, shimPid); w != 2*first {
		t.Fatalf("hand-off after an exec that woke the shim: waited %v, want twice %v", w, first)
	}
}
