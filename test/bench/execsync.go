package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	execSyncN = flag.Int("execsync-n", 200, "ExecSync calls the execsync benchmark makes per endpoint")
	// Two builds compared on a loaded machine only compare fairly when
	// their calls are interleaved: the load changes by the second.
	execSyncGap     = flag.Duration("execsync-gap", 0, "pause between the execsync benchmark's calls (e.g. 3s: an exec probe's period, with the shim idle in between)")
	execSyncCompare = flag.String("execsync-compare", "", "comma-separated further CRI endpoints the execsync benchmark interleaves its calls with")
	execSyncMonitor = flag.Bool("execsync-monitor", true, "wait until each berth pod's shim is berth-mon (idle) before measuring, as an exec-probed pod is between probes")
)

// ExecSync `true` in one running container, many times: the latency of
// the exec path alone (berthd, the pod's shim, the exec's setup).
func init() {
	register("execsync", benchExecSync)
}

type execTarget struct {
	e    *env
	id   string
	pod  string
	ds   []time.Duration
	shim int           // the pod's berth-shim, 0 if not found (another runtime)
	cpu  time.Duration // the shim's CPU and its reaped children's over the calls
}

func benchExecSync(e *env) error {
	envs := []*env{e}
	for _, ep := range strings.Split(*execSyncCompare, ",") {
		if ep == "" {
			continue
		}
		conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		envs = append(envs, &env{ctx: e.ctx, runtime: runtimeapi.NewRuntimeServiceClient(conn),
			images: runtimeapi.NewImageServiceClient(conn), endpoint: ep})
	}
	var targets []*execTarget
	defer func() {
		for _, t := range targets {
			t.e.removePod(t.pod)
		}
	}()
	for i, x := range envs {
		t, err := execContainer(x, i)
		if err != nil {
			return fmt.Errorf("%s: %w", x.endpoint, err)
		}
		targets = append(targets, t)
	}
	// Warm up: the first exec pages the shim's exec path in.
	for range 5 {
		for _, t := range targets {
			if _, err := execTrue(t); err != nil {
				return err
			}
		}
	}
	for _, t := range targets {
		t.shim = shimOfPod(t.pod)
	}
	if *execSyncMonitor {
		for _, t := range targets {
			waitMonitor(t.shim)
		}
		for _, t := range targets {
			if _, err := execTrue(t); err != nil {
				return err
			}
		}
	}
	for _, t := range targets {
		t.cpu = -processCPU(t.shim)
	}
	for i := range *execSyncN {
		time.Sleep(*execSyncGap)
		// Each endpoint goes first in turn.
		for j := range targets {
			t := targets[(i+j)%len(targets)]
			d, err := execTrue(t)
			if err != nil {
				return err
			}
			t.ds = append(t.ds, d)
		}
	}
	for _, t := range targets {
		t.cpu += processCPU(t.shim)
		label := "ExecSync (true)"
		if len(targets) > 1 {
			label += " " + t.e.endpoint
		}
		summary(label, t.ds)
		if t.shim != 0 {
			fmt.Printf("   %-28s %s\n", "shim at the end", shimComm(t.shim))
			// The shim and what it reaped: the exec's processes and the
			// command (berthd's part is not in it).
			fmt.Printf("   %-28s %v per call\n", "shim+exec CPU", (t.cpu / time.Duration(len(t.ds))).Round(10*time.Microsecond))
		}
	}
	return nil
}

func execContainer(e *env, i int) (*execTarget, error) {
	spec := &runtimeapi.ImageSpec{Image: *containerImage}
	if st, err := e.images.ImageStatus(e.ctx, &runtimeapi.ImageStatusRequest{Image: spec}); err != nil || st.GetImage() == nil {
		if _, err := e.images.PullImage(e.ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
			return nil, fmt.Errorf("pull %s: %w", *containerImage, err)
		}
	}
	podCfg := podConfig(strconv.FormatInt(time.Now().UnixNano(), 36)+"e", i)
	podID, err := e.runPod(podCfg)
	if err != nil {
		return nil, err
	}
	t := &execTarget{e: e, pod: podID}
	cfg := containerConfig("execsync")
	cfg.LogPath = ""
	resp, err := e.runtime.CreateContainer(e.ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		e.removePod(podID)
		return nil, fmt.Errorf("CreateContainer: %w", err)
	}
	t.id = resp.ContainerId
	if _, err := e.runtime.StartContainer(e.ctx, &runtimeapi.StartContainerRequest{ContainerId: t.id}); err != nil {
		e.removePod(podID)
		return nil, fmt.Errorf("StartContainer: %w", err)
	}
	return t, nil
}

func execTrue(t *execTarget) (time.Duration, error) {
	start := time.Now()
	resp, err := t.e.runtime.ExecSync(t.e.ctx, &runtimeapi.ExecSyncRequest{ContainerId: t.id, Cmd: []string{"true"}, Timeout: 10})
	if err != nil {
		return 0, fmt.Errorf("ExecSync on %s: %w", t.e.endpoint, err)
	}
	if resp.ExitCode != 0 {
		return 0, fmt.Errorf("ExecSync true on %s: exit %d, stderr %q", t.e.endpoint, resp.ExitCode, resp.Stderr)
	}
	return time.Since(start), nil
}

// shimComm is what the shim process at pid runs now: berth-shim (Go) or
// berth-mon.
func shimComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// waitMonitor waits (a minute at most) until the shim at pid hands off to
// berth-mon; a shim that never does (no berth-mon, or hand-off off) is
// measured as it is.
func waitMonitor(pid int) {
	if pid == 0 {
		return
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if shimComm(pid) == "berth-mon" {
			return
		}
	}
}

// shimOfPod is the pid of the berth-shim serving pod, 0 if none.
func shimOfPod(pod string) int {
	if pids := berthShims(func(args []string) bool { return flagValue(args, "--id") == pod }); len(pids) > 0 {
		return pids[0]
	}
	return 0
}

// processCPU is the user and system time of pid and of its reaped
// children (utime, stime, cutime, cstime of /proc/<pid>/stat).
func processCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis, from the state (3).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var ticks int64
	for _, i := range []int{14, 15, 16, 17} {
		if len(f) > i-3 {
			n, _ := strconv.ParseInt(f[i-3], 10, 64)
			ticks += n
		}
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(ticks) * 10 * time.Millisecond
}
