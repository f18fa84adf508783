package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// statusFields are the lines of /proc/<pid>/status an exec must share with
// the container's init: credentials, capabilities, no_new_privs, seccomp.
var statusFields = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"}

// ignoreSignal ignores sig in this process (children started meanwhile
// inherit it) until the returned func puts the old action back. The raw
// call: libc keeps 32 and 33 for itself.
func ignoreSignal(t *testing.T, sig int) func() {
	t.Helper()
	var old, ign [4]uint64 // handler, flags, restorer, mask
	ign[0] = 1             // SIG_IGN
	if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&ign)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); errno != 0 {
		t.Fatalf("ignore signal %d: %v", sig, errno)
	}
	return func() {
		_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	}
}

func procStatus(t *testing.T, text string) map[string]string {
	t.Helper()
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// TestExecSyncServedByMonitor: once a pod's shim is berth-mon, an ExecSync
// is spawned and answered by berth-mon itself (the pod stays the small
// monitor), runs as the container's process runs, and gives what the Go
// shim gives: output of both streams, the exit code, a timeout, commands at
// once. A promotion while commands run hands them to the Go shim, which
// finishes them.
func TestExecSyncServedByMonitor(t *testing.T) {
	// berthd, and so the shims, start with signal 32 ignored, as under a
	// parent that ignores it: libc's sigaction will not name it, and the
	// exec must still start with nothing ignored.
	e := func() *ctrEnv {
		defer ignoreSignal(t, 32)()
		return newCtrEnv(t)
	}()
	pod, podCfg := e.pod(t, "monexec")
	shimPid := inspectPod(t, e.d, pod).Pid
	cfg := ctrConfig("probed", "sleep", "1000")
	cfg.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1234}
	cfg.Linux.SecurityContext.SupplementalGroups = []int64{5678}
	cfg.Linux.SecurityContext.NoNewPrivs = true
	cfg.WorkingDir = "/tmp"
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "PROBE_ENV", Value: []byte("v a l")}}
	id := e.run(t, pod, podCfg, cfg)
	initPid := int(inspectPid(t, e, id))
	waitShimExe(t, shimPid, "berth-mon")
	stayed := func(what string) {
		t.Helper()
		if exe := shimExe(t, shimPid); exe != "berth-mon" {
			t.Fatalf("%s promoted the shim: it runs %s", what, exe)
		}
	}

	// The exec's view of itself against the init's, read from the node.
	r := e.execSync(t, id, "sh", "-c", `cat /proc/self/status; for n in ipc mnt net pid uts cgroup; do echo "ns $n $(readlink /proc/self/ns/$n)"; done; echo "cwd $(pwd)"; echo "env $PROBE_ENV"; cat /proc/self/cgroup; echo "-- init"; cat /proc/1/cgroup`)
	stayed("an ExecSync")
	if r.ExitCode != 0 {
		t.Fatalf("probe: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	initStatus, err := os.ReadFile(filepath.Join("/proc", itoa(initPid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	got, want := procStatus(t, string(r.Stdout)), procStatus(t, string(initStatus))
	for _, k := range statusFields {
		if got[k] != want[k] {
			t.Errorf("exec's %s %q, the init's %q", k, got[k], want[k])
		}
	}
	if got["SigBlk"] != "0000000000000000" || got["SigIgn"] != "0000000000000000" {
		t.Errorf("exec starts with signals blocked %s, ignored %s", got["SigBlk"], got["SigIgn"])
	}
	out := string(r.Stdout)
	for _, n := range []string{"ipc", "mnt", "net", "pid", "uts", "cgroup"} {
		ns, err := os.Readlink(filepath.Join("/proc", itoa(initPid), "ns", n))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "ns "+n+" "+ns+"\n") {
			t.Errorf("exec is not in the init's %s namespace %s:\n%s", n, ns, out)
		}
	}
	// Both as the container sees them (its cgroup namespace, if it has
	// one of its own, shows its cgroup as "/"); the init is its PID 1.
	if own, init, ok := strings.Cut(out[strings.Index(out, "env v a l\n")+len("env v a l\n"):], "-- init\n"); !ok || own != init || own == "" {
		t.Errorf("exec's cgroups differ from the init's:\n%s", out)
	}
	for _, w := range []string{"cwd /tmp\n", "env v a l\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("exec output lacks %q:\n%s", w, out)
		}
	}

	// It spawned through the files the Go shim kept open for the
	// container, one of each, not opened anew per exec.
	mnt, err := os.Readlink(filepath.Join("/proc", itoa(initPid), "ns", "mnt"))
	if err != nil {
		t.Fatal(err)
	}
	if n := fdsOn(t, shimPid, mnt); n != 1 {
		t.Errorf("berth-mon holds %d descriptors on the container's mount namespace, want 1", n)
	}

	// Both streams, an exit code, output of many frames.
	r = e.execSync(t, id, "sh", "-c", "echo out; echo err >&2; head -c 300000 /dev/zero | tr '\\0' x; exit 3")
	if r.ExitCode != 3 || string(r.Stderr) != "err\n" || string(r.Stdout) != "out\n"+strings.Repeat("x", 300000) {
		t.Errorf("exec: exit %d, stderr %q, %d bytes of stdout", r.ExitCode, r.Stderr, len(r.Stdout))
	}
	// A command that is not there: the Go shim's error, through a
	// promotion.
	if _, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/no/such"}, Timeout: 10}); err == nil {
		t.Errorf("exec of a missing command succeeded")
	}
	waitShimExe(t, shimPid, "berth-mon")

	// A timeout kills the command and its children.
	start := time.Now()
	_, err = e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "sleep 300 & sleep 301"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("exec past its timeout: %v, want DeadlineExceeded", err)
	}
	stayed("an ExecSync that timed out")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("exec with a 1s timeout took %v", d)
	}
	noSleeper := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			ps := e.execSync(t, id, "ps", "-o", "args")
			if !strings.Contains(string(ps.Stdout), "sleep 30") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still running:\n%s", what, ps.Stdout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	noSleeper("after the timeout")
	// One that writes without pause still times out.
	_, err = e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"yes"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("exec of yes past its timeout: %v, want DeadlineExceeded", err)
	}
	stayed("an ExecSync of yes")

	// Commands at once.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", fmt.Sprintf("sleep 0.3; echo %d", i)}, Timeout: 30})
			if err != nil || string(r.Stdout) != fmt.Sprintf("%d\n", i) {
				t.Errorf("concurrent exec %d: %v %q", i, err, r.GetStdout())
			}
		}()
	}
	wg.Wait()
	stayed("concurrent ExecSyncs")

	// A promotion while two commands run: one that ends by itself, one
	// that times out. The Go shim finishes both.
	rootTmp := filepath.Join("/proc", itoa(initPid), "root", "tmp")
	type result struct {
		r   *runtimeapi.ExecSyncResponse
		err error
	}
	ended, timedOut := make(chan result, 1), make(chan result, 1)
	go func() {
		r, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id,
			Cmd: []string{"sh", "-c", "echo a; echo e1 >&2; touch /tmp/started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo b; echo e2 >&2; exit 4"}, Timeout: 120})
		ended <- result{r, err}
	}()
	go func() {
		r, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "touch /tmp/started2; sleep 302"}, Timeout: 4})
		timedOut <- result{r, err}
	}()
	waitFile := func(name string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := os.Stat(filepath.Join(rootTmp, name)); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the exec did not make /tmp/%s", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFile("started")
	waitFile("started2")
	stayed("two ExecSyncs")
	// berth-mon takes only ASCII in a request: this one is the Go shim's.
	if r := e.execSync(t, id, "echo", "été"); string(r.Stdout) != "été\n" {
		t.Errorf("exec promoted: %q", r.Stdout)
	}
	if exe := shimExe(t, shimPid); exe != "berth-shim" {
		t.Fatalf("an exec with a non-ASCII argument left the shim %s", exe)
	}
	if err := os.WriteFile(filepath.Join(rootTmp, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-ended:
		if res.err != nil || res.r.ExitCode != 4 || string(res.r.Stdout) != "a\nb\n" || string(res.r.Stderr) != "e1\ne2\n" {
			t.Errorf("exec handed over: %v, exit %d, stdout %q, stderr %q", res.err, res.r.GetExitCode(), res.r.GetStdout(), res.r.GetStderr())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("exec handed over did not end")
	}
	select {
	case res := <-timedOut:
		if status.Code(res.err) != codes.DeadlineExceeded {
			t.Errorf("exec handed over before its timeout: %v, want DeadlineExceeded", res.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("exec handed over with a timeout did not end")
	}
	noSleeper("after the handed-over timeout")

	// berthd giving up (its caller's deadline) ends the command.
	waitShimExe(t, shimPid, "berth-mon")
	ctx, cancel := context.WithTimeout(framework.Context(t), time.Second)
	_, err = e.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "303"}})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("exec whose caller gave up: %v", err)
	}
	stayed("an ExecSync given up")
	deadline := time.Now().Add(time.Minute)
	for strings.Contains(string(e.execSync(t, id, "ps", "-o", "args").Stdout), "sleep 303") {
		if time.Now().After(deadline) {
			t.Fatal("the command of an exec given up still runs")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := fdsOn(t, shimPid, mnt); n != 1 {
		t.Errorf("after execs berth-mon holds %d descriptors on the container's mount namespace, want 1", n)
	}
	// The container's exit (a kill berth-mon serves) closes them by the
	// time berthd reports it.
	if _, err := e.d.Runtime.StopContainer(framework.Context(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if n := fdsOn(t, shimPid, mnt); n != 0 {
		t.Errorf("the container exited, and its shim still holds %d descriptors on its mount namespace", n)
	}
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}
