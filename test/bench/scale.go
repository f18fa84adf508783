package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Every CRI call's latency on a node with many pods (one container each)
// against the same call with few: a call whose time grows with the pods
// on the node shows here. Then berthd's restart-to-ready time with that
// many pods.
func init() {
	register("scale", benchScale)
}

var (
	scalePods   = flag.Int("scale-pods", 250, "scale benchmark: pods (one container each) on the node for the large size")
	scaleSmall  = flag.Int("scale-small", 10, "scale benchmark: pods for the small size it compares with")
	scaleReps   = flag.Int("scale-reps", 30, "scale benchmark: calls of each kind per size")
	scaleProbes = flag.Int("scale-probes", 10, "scale benchmark: pods run and removed at each size to time the lifecycle calls")
)

// scaleCalls are timed in this order; lifecycle calls come from the probe
// pods.
var scaleCalls = []string{
	"Version", "Status", "ListPodSandbox", "ListPodSandbox(id)", "ListContainers", "ListContainers(pod)",
	"PodSandboxStatus", "ContainerStatus", "PodSandboxStats", "ListPodSandboxStats", "ContainerStats",
	"ListContainerStats", "ListPodSandboxMetrics", "ImageStatus", "ListImages", "ImageFsInfo", "ExecSync",
	"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
	"StopPodSandbox", "RemovePodSandbox",
}

func benchScale(e *env) error {
	if *scaleSmall >= *scalePods {
		return fmt.Errorf("-scale-small %d must be below -scale-pods %d", *scaleSmall, *scalePods)
	}
	set, err := newPodSet(e, strconv.FormatInt(time.Now().UnixNano(), 36)+"s")
	if err != nil {
		return err
	}
	defer set.remove()

	if err := set.grow(*scaleSmall, 1, nil); err != nil {
		return fmt.Errorf("fill %d pods: %w", *scaleSmall, err)
	}
	smallProc := berthdStats(e)
	load := startLoad()
	small, err := scaleCallTimes(e, set)
	if err != nil {
		return fmt.Errorf("at %d pods: %w", *scaleSmall, err)
	}
	smallLoad := load.stop()

	fill := time.Now()
	if err := set.grow(*scalePods, 1, nil); err != nil {
		return fmt.Errorf("fill %d pods: %w", *scalePods, err)
	}
	fmt.Printf("   filled to %d pods in %v\n", *scalePods, time.Since(fill).Round(time.Millisecond))
	largeProc := berthdStats(e)
	load = startLoad()
	large, err := scaleCallTimes(e, set)
	if err != nil {
		return fmt.Errorf("at %d pods: %w", *scalePods, err)
	}
	largeLoad := load.stop()

	fmt.Printf("   %-22s %-26s %-26s %s\n", "call", fmt.Sprintf("%d pods", *scaleSmall), fmt.Sprintf("%d pods", *scalePods), "ratio p50 / p95")
	for _, c := range scaleCalls {
		s, l := small.get(c), large.get(c)
		if len(s) == 0 || len(l) == 0 {
			continue
		}
		r := ratio(percentile(l, 0.5), percentile(s, 0.5)) + " / " + ratio(percentile(l, 0.95), percentile(s, 0.95))
		fmt.Printf("   %-22s %-26s %-26s %s\n", c, latency(s), latency(l), r)
		results.add(row{bench: "scale", measure: c, n: fmt.Sprintf("%d→%d pods", *scaleSmall, *scalePods),
			value: fmt.Sprintf("p50 %v→%v  p95 %v→%v  (%s)", roundDur(percentile(s, 0.5)), roundDur(percentile(l, 0.5)),
				roundDur(percentile(s, 0.95)), roundDur(percentile(l, 0.95)), r),
			goal: "≤ 1.2×", load: smallLoad + " / " + largeLoad})
	}

	if smallProc != nil && largeProc != nil {
		v := fmt.Sprintf("RSS %s→%s  USS %s→%s  fds %d→%d  threads %d→%d  goroutines %d→%d",
			mb(smallProc.mem.RSS), mb(largeProc.mem.RSS), mb(smallProc.mem.USS), mb(largeProc.mem.USS),
			smallProc.fds, largeProc.fds, smallProc.threads, largeProc.threads, smallProc.goroutines, largeProc.goroutines)
		fmt.Printf("   berthd idle at %d→%d pods: %s\n", *scaleSmall, *scalePods, v)
		results.add(row{bench: "scale", measure: "berthd idle", n: fmt.Sprintf("%d→%d pods", *scaleSmall, *scalePods), value: v,
			goal: "threads, goroutines flat", load: smallLoad + " / " + largeLoad})
	}
	if *berthdPidfile == "" {
		fmt.Println("   restart: skipped (no -berthd-pidfile: make bench did not start this runtime)")
		return nil
	}
	load = startLoad()
	r, err := restartBerthd(e, set.ids(), *scalePods)
	if err != nil {
		return fmt.Errorf("restart berthd: %w", err)
	}
	l := load.stop()
	fmt.Printf("   restart with %d pods: stop %v, start to Status ready %v, to all pods and containers listed ready %v\n",
		*scalePods, roundDur(r.stop), roundDur(r.status), roundDur(r.all))
	n := fmt.Sprintf("%d pods", *scalePods)
	results.add(row{bench: "scale", measure: "berthd stop (SIGTERM to exit)", n: n, value: roundDur(r.stop).String(), load: l})
	results.add(row{bench: "scale", measure: "berthd start to Status ready", n: n, value: roundDur(r.status).String(), load: l})
	results.add(row{bench: "scale", measure: "berthd start to every pod listed ready", n: n, value: roundDur(r.all).String(), goal: "≤ 2 s", load: l})
	return nil
}

// scaleCallTimes times each kind of call -scale-reps times against the
// set's pods (round robin), then runs and removes -scale-probes pods for
// the lifecycle calls.
func scaleCallTimes(e *env, set *podSet) (*callTimes, error) {
	times := &callTimes{}
	ctx := e.ctx
	image := &runtimeapi.ImageSpec{Image: *containerImage}
	set.mu.Lock()
	pods := append([]benchPod(nil), set.pods...)
	set.mu.Unlock()
	type call struct {
		name string
		do   func(p benchPod) error
	}
	calls := []call{
		{"Version", func(benchPod) error { _, err := e.runtime.Version(ctx, &runtimeapi.VersionRequest{}); return err }},
		{"Status", func(benchPod) error { _, err := e.runtime.Status(ctx, &runtimeapi.StatusRequest{}); return err }},
		{"ListPodSandbox", func(benchPod) error {
			_, err := e.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			return err
		}},
		{"ListPodSandbox(id)", func(p benchPod) error {
			_, err := e.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: p.id}})
			return err
		}},
		{"ListContainers", func(benchPod) error {
			_, err := e.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		}},
		{"ListContainers(pod)", func(p benchPod) error {
			_, err := e.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id}})
			return err
		}},
		{"PodSandboxStatus", func(p benchPod) error {
			_, err := e.runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
			return err
		}},
		{"ContainerStatus", func(p benchPod) error {
			_, err := e.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: p.containers[0]})
			return err
		}},
		{"PodSandboxStats", func(p benchPod) error {
			_, err := e.runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: p.id})
			return err
		}},
		{"ListPodSandboxStats", func(benchPod) error {
			_, err := e.runtime.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		}},
		{"ContainerStats", func(p benchPod) error {
			_, err := e.runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: p.containers[0]})
			return err
		}},
		{"ListContainerStats", func(benchPod) error {
			_, err := e.runtime.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			return err
		}},
		{"ListPodSandboxMetrics", func(benchPod) error {
			_, err := e.runtime.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
			return err
		}},
		{"ImageStatus", func(benchPod) error {
			_, err := e.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: image})
			return err
		}},
		{"ListImages", func(benchPod) error { _, err := e.images.ListImages(ctx, &runtimeapi.ListImagesRequest{}); return err }},
		{"ImageFsInfo", func(benchPod) error {
			_, err := e.images.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
			return err
		}},
		{"ExecSync", func(p benchPod) error {
			r, err := e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: p.containers[0], Cmd: []string{"true"}, Timeout: 30})
			if err == nil && r.ExitCode != 0 {
				err = fmt.Errorf("exit %d: %s", r.ExitCode, r.Stderr)
			}
			return err
		}},
	}
	for _, c := range calls {
		for i := 0; i < *scaleReps; i++ {
			p := pods[i%len(pods)]
			start := time.Now()
			if err := c.do(p); err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			times.add(c.name, time.Since(start))
		}
	}
	// Lifecycle: probe pods on top of the node's, one at a time.
	for i := 0; i < *scaleProbes; i++ {
		p, err := set.addPod(ctx, 1, times)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := e.runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: p.containers[0], Timeout: 0}); err != nil {
			return nil, fmt.Errorf("StopContainer: %w", err)
		}
		stopped := time.Now()
		times.add("StopContainer", stopped.Sub(start))
		if _, err := e.runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: p.containers[0]}); err != nil {
			return nil, fmt.Errorf("RemoveContainer: %w", err)
		}
		times.add("RemoveContainer", time.Since(stopped))
		if err := set.removePod(ctx, p.id, times); err != nil {
			return nil, err
		}
	}
	return times, nil
}

// podsReady counts the pods of ids listed ready and the running
// containers among them.
func podsReady(ctx context.Context, rt runtimeapi.RuntimeServiceClient, ids []string) (pods, containers int, err error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	ps, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}})
	if err != nil {
		return 0, 0, err
	}
	for _, p := range ps.Items {
		if want[p.Id] {
			pods++
		}
	}
	cs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil {
		return 0, 0, err
	}
	for _, c := range cs.Containers {
		if want[c.PodSandboxId] {
			containers++
		}
	}
	return pods, containers, nil
}

// berthdStats is berthd's memory, fds, threads and goroutines once its
// last calls have settled; nil without a berthd pid.
func berthdStats(e *env) *procStats {
	pid, err := berthdPid()
	if err != nil || pid <= 0 {
		return nil
	}
	time.Sleep(2 * time.Second)
	g := berthdGoroutines(e.ctx)
	st, err := readProcStats(pid)
	if err != nil {
		return nil
	}
	st.goroutines = g
	return &st
}
