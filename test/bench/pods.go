package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod sandbox lifecycle latency and the memory each running pod costs, with
// the network config the endpoint has (make bench gives berthd a bridge).
func init() {
	register("pods", benchPods)
}

var sharedPID = flag.Bool("pods-shared-pid", false, "pods benchmark: pods share one PID namespace (berth adds a pause process per pod)")

const (
	latencyPods = 30
	memoryPods  = 50
)

// runtimeProcs are the per-pod processes of the runtimes we compare: berth's
// shim and pause, containerd's shims and pause, CRI-O's conmon.
var runtimeProcs = map[string]bool{
	"berth-shim": true, "berth-mon": true, "containerd-shim": true, "containerd-shim-runc-v2": true, "pause": true, "conmon": true,
}

// podConfig is shaped like the kubelet's: own PID namespace per container,
// labels.
func podConfig(run string, i int) *runtimeapi.PodSandboxConfig {
	name := fmt.Sprintf("bench-%s-%d", run, i)
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: fmt.Sprintf("uid-%s-%d", run, i)},
		Hostname: name,
		Labels:   map[string]string{"bench": run},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: pidMode()},
			},
		},
	}
}

func pidMode() runtimeapi.NamespaceMode {
	if *sharedPID {
		return runtimeapi.NamespaceMode_POD
	}
	return runtimeapi.NamespaceMode_CONTAINER
}

func benchPods(e *env) error {
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	var ids []string
	// Output piped into head must not kill us before the pods are removed.
	signal.Ignore(syscall.SIGPIPE)
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for _, id := range ids {
			_, _ = e.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			_, _ = e.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
		}
		ids = nil
	}
	defer cleanup()

	var runs, stops, removes []time.Duration
	for i := 0; i < latencyPods; i++ {
		start := time.Now()
		resp, err := e.runtime.RunPodSandbox(e.ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(run, i)})
		if err != nil {
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		runs = append(runs, time.Since(start))
		ids = append(ids, resp.PodSandboxId)
	}
	for _, id := range ids {
		start := time.Now()
		if _, err := e.runtime.StopPodSandbox(e.ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			return fmt.Errorf("StopPodSandbox: %w", err)
		}
		stops = append(stops, time.Since(start))
		start = time.Now()
		if _, err := e.runtime.RemovePodSandbox(e.ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			return fmt.Errorf("RemovePodSandbox: %w", err)
		}
		removes = append(removes, time.Since(start))
	}
	ids = nil
	summary("RunPodSandbox", runs)
	summary("StopPodSandbox", stops)
	summary("RemovePodSandbox", removes)
	both := make([]time.Duration, len(stops))
	for i := range stops {
		both[i] = stops[i] + removes[i]
	}
	summary("Stop+RemovePodSandbox", both)

	// The same without CNI (host network): the runtime's own share.
	var hostRuns, hostStops []time.Duration
	for i := 0; i < latencyPods; i++ {
		cfg := podConfig(run+"h", i)
		cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		start := time.Now()
		resp, err := e.runtime.RunPodSandbox(e.ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			return fmt.Errorf("RunPodSandbox (host network): %w", err)
		}
		hostRuns = append(hostRuns, time.Since(start))
		ids = append(ids, resp.PodSandboxId)
	}
	for _, id := range ids {
		start := time.Now()
		if _, err := e.runtime.StopPodSandbox(e.ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			return fmt.Errorf("StopPodSandbox: %w", err)
		}
		if _, err := e.runtime.RemovePodSandbox(e.ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			return fmt.Errorf("RemovePodSandbox: %w", err)
		}
		hostStops = append(hostStops, time.Since(start))
	}
	ids = nil
	summary("RunPodSandbox hostNetwork", hostRuns)
	summary("Stop+Remove hostNetwork", hostStops)

	before := runtimePids()
	for i := 0; i < memoryPods; i++ {
		resp, err := e.runtime.RunPodSandbox(e.ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(run+"m", i)})
		if err != nil {
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		ids = append(ids, resp.PodSandboxId)
	}
	// Let the shims settle (GC, lazily touched pages) as they would on a node.
	time.Sleep(2 * time.Second)
	var rss, pss uint64
	byName := map[string]int{}
	for pid, name := range ofPods(runtimePids(), before, ids) {
		r, p, err := smapsRollup(pid)
		if err != nil {
			continue
		}
		rss += r
		pss += p
		byName[name]++
	}
	fmt.Printf("   memory with %d pods: processes %v\n", memoryPods, byName)
	fmt.Printf("   %-28s RSS %.2f MB  PSS %.2f MB  (total RSS %.1f MB, PSS %.1f MB)\n", "per pod",
		float64(rss)/memoryPods/1024, float64(pss)/memoryPods/1024, float64(rss)/1024, float64(pss)/1024)
	return nil
}

// runtimePids maps the pids of runtime per-pod processes to their names.
func runtimePids() map[int]string {
	out := map[int]string{}
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		if !runtimeProcs[name] && !strings.HasPrefix(name, "containerd-shim") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(c)))
		out[pid] = name
	}
	return out
}

// smapsRollup reads a process's Rss and Pss in KiB.
func smapsRollup(pid int) (rss, pss uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		}
	}
	return rss, pss, sc.Err()
}

// ofPods keeps the runtime processes that belong to our pods: new since
// before, and either naming a pod id on their command line (berth-shim,
// containerd's shim, conmon) or a child of one that does (pause), so other
// pods on the node are not counted.
func ofPods(procs, before map[int]string, ids []string) map[int]string {
	out := map[int]string{}
	for pid, name := range procs {
		if _, old := before[pid]; old {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		for _, id := range ids {
			if strings.Contains(string(cmdline), id) {
				out[pid] = name
				break
			}
		}
	}
	for pid, name := range procs {
		if _, ok := out[pid]; ok {
			continue
		}
		if _, ok := out[parentPid(pid)]; ok {
			out[pid] = name
		}
	}
	return out
}

func parentPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// runPod runs a pod for a benchmark of its containers; removePod ends it.
func (e *env) runPod(cfg *runtimeapi.PodSandboxConfig) (string, error) {
	pod, err := e.runtime.RunPodSandbox(e.ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", fmt.Errorf("RunPodSandbox: %w", err)
	}
	return pod.PodSandboxId, nil
}

func (e *env) removePod(id string) {
	_, _ = e.runtime.StopPodSandbox(e.ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	_, _ = e.runtime.RemovePodSandbox(e.ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
}
