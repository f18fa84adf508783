package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerImage is what the containers benchmark runs: any image with sh,
// sleep and true (pulled through the runtime's registry config if absent).
var containerImage = flag.String("container-image", envOr("BERTH_BENCH_CONTAINER_IMAGE", "docker.io/library/busybox:latest"),
	"image the containers benchmark runs (env BERTH_BENCH_CONTAINER_IMAGE)")

const latencyContainers = 30

// Container create+start and ExecSync latency in one pod, and the memory
// of that pod's per-pod runtime processes (berth-shim for berth).
func init() {
	register("containers", benchContainers)
}

func containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: *containerImage},
		Command:  []string{"sleep", "3600"},
		LogPath:  name + ".log",
		Labels:   map[string]string{"bench": "containers"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func benchContainers(e *env) error {
	spec := &runtimeapi.ImageSpec{Image: *containerImage}
	if st, err := e.images.ImageStatus(e.ctx, &runtimeapi.ImageStatusRequest{Image: spec}); err != nil || st.GetImage() == nil {
		if _, err := e.images.PullImage(e.ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
			return fmt.Errorf("pull %s: %w", *containerImage, err)
		}
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	podCfg := podConfig(run+"c", 0)
	logDir, err := os.MkdirTemp("", "berth-bench-logs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(logDir)
	podCfg.LogDirectory = logDir
	before := runtimePids()
	podID, err := e.runPod(podCfg)
	if err != nil {
		return err
	}
	// Removing the pod removes its containers.
	defer e.removePod(podID)

	var creates, starts, both []time.Duration
	var ids []string
	var shimOne string
	for i := 0; i < latencyContainers; i++ {
		start := time.Now()
		resp, err := e.runtime.CreateContainer(e.ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: podID, Config: containerConfig(fmt.Sprintf("c%d", i)), SandboxConfig: podCfg,
		})
		if err != nil {
			return fmt.Errorf("CreateContainer: %w", err)
		}
		created := time.Now()
		if _, err := e.runtime.StartContainer(e.ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			return fmt.Errorf("StartContainer: %w", err)
		}
		done := time.Now()
		creates, starts, both = append(creates, created.Sub(start)), append(starts, done.Sub(created)), append(both, done.Sub(start))
		ids = append(ids, resp.ContainerId)
		if i == 0 {
			time.Sleep(time.Second)
			shimOne = podMemory(before, podID)
		}
	}
	time.Sleep(time.Second)
	shimAll := podMemory(before, podID)
	summary("CreateContainer", creates)
	summary("StartContainer", starts)
	summary("Create+StartContainer", both)

	var execs []time.Duration
	for i := 0; i < latencyContainers; i++ {
		start := time.Now()
		resp, err := e.runtime.ExecSync(e.ctx, &runtimeapi.ExecSyncRequest{ContainerId: ids[0], Cmd: []string{"true"}, Timeout: 10})
		if err != nil {
			return fmt.Errorf("ExecSync: %w", err)
		}
		if resp.ExitCode != 0 {
			return fmt.Errorf("ExecSync true: exit %d, stderr %q", resp.ExitCode, resp.Stderr)
		}
		execs = append(execs, time.Since(start))
	}
	summary("ExecSync (true)", execs)

	var stops, removes []time.Duration
	for _, id := range ids[1:] {
		start := time.Now()
		if _, err := e.runtime.StopContainer(e.ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
			return fmt.Errorf("StopContainer: %w", err)
		}
		stopped := time.Now()
		if _, err := e.runtime.RemoveContainer(e.ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			return fmt.Errorf("RemoveContainer: %w", err)
		}
		stops, removes = append(stops, time.Since(start)), append(removes, time.Since(stopped))
	}
	summary("RemoveContainer (exited)", removes)
	summary("Stop(0)+RemoveContainer", stops)
	fmt.Printf("   %-28s %s\n", "pod processes, 1 container", shimOne)
	fmt.Printf("   %-28s %s\n", fmt.Sprintf("pod processes, %d containers", latencyContainers), shimAll)
	return nil
}

// podMemory sums the RSS and PSS of the runtime's per-pod processes of one
// pod (the shim for berth; shim and pause for containerd; conmons for
// CRI-O, which are per container).
func podMemory(before map[int]string, podID string) string {
	procs := ofPods(runtimePids(), before, []string{podID})
	var rss, pss uint64
	var names []string
	for pid, name := range procs {
		r, p, err := smapsRollup(pid)
		if err != nil {
			continue
		}
		rss += r
		pss += p
		names = append(names, name)
	}
	return fmt.Sprintf("RSS %.2f MB  PSS %.2f MB  (%s)", float64(rss)/1024, float64(pss)/1024, strings.Join(names, ", "))
}
