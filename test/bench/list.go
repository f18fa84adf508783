package main

import (
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	listSizes = flag.String("list-containers", "100,1000", "list benchmark: the container counts to measure at, spread over -list-pods pods")
	listPods  = flag.Int("list-pods", 10, "list benchmark: pods the containers run in")
	// Two builds measured on the same containers and the same load:
	// berthd is restarted as each in turn before its calls are timed.
	listBerthd = flag.String("list-berthd", "", "list benchmark: comma-separated berthd binaries to alternate at each size (needs -berthd-pidfile: make bench's own berthd)")
	listRounds = flag.Int("list-rounds", 1, "list benchmark: rounds over -list-berthd at each size")
)

const listCalls = 200

// The List and Status calls' latency with many containers: the kubelet
// relists every second, so their cost per container is paid all the time.
func init() {
	register("list", benchList)
}

func benchList(e *env) error {
	var sizes []int
	for _, s := range strings.Split(*listSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -list-containers %q", *listSizes)
		}
		sizes = append(sizes, n)
	}
	// A berthd swapped in that cannot start (it finds berth-shim beside
	// itself) would leave the node's containers to nobody.
	if *listBerthd != "" {
		for _, bin := range strings.Split(*listBerthd, ",") {
			for _, exe := range []string{bin, filepath.Join(filepath.Dir(bin), "berth-shim")} {
				if _, err := exec.LookPath(exe); err != nil {
					return fmt.Errorf("-list-berthd %s: berthd needs berth-shim beside it: %w", bin, err)
				}
			}
		}
	}
	if err := ensureImage(e, *containerImage); err != nil {
		return err
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	var pods []string
	var cfgs []*runtimeapi.PodSandboxConfig
	defer func() {
		for _, id := range pods {
			e.removePod(id)
		}
	}()
	for i := 0; i < *listPods; i++ {
		cfg := podConfig(run+"l", i)
		cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		id, err := e.runPod(cfg)
		if err != nil {
			return err
		}
		pods, cfgs = append(pods, id), append(cfgs, cfg)
	}
	var ids []string
	for _, size := range sizes {
		for len(ids) < size {
			p := len(ids) % len(pods)
			resp, err := e.runtime.CreateContainer(e.ctx, &runtimeapi.CreateContainerRequest{
				PodSandboxId: pods[p], Config: containerConfig(fmt.Sprintf("l%d", len(ids))), SandboxConfig: cfgs[p],
			})
			if err != nil {
				return fmt.Errorf("CreateContainer %d: %w", len(ids), err)
			}
			if _, err := e.runtime.StartContainer(e.ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
				return fmt.Errorf("StartContainer: %w", err)
			}
			ids = append(ids, resp.ContainerId)
		}
		bins := []string{""}
		if *listBerthd != "" {
			bins = strings.Split(*listBerthd, ",")
		}
		for round := 1; round <= *listRounds; round++ {
			for _, bin := range bins {
				tag := ""
				if bin != "" {
					if _, err := restartBerthdAs(e, bin, pods, size); err != nil {
						return fmt.Errorf("restart berthd as %s: %w", bin, err)
					}
					tag = fmt.Sprintf(" [%s r%d]", filepath.Base(filepath.Dir(bin)), round)
				}
				load := startLoad()
				if err := listCallTimes(e, size, pods, ids, tag); err != nil {
					return err
				}
				results.setLoad("list", load.stop())
			}
		}
	}
	return nil
}

// listCallTimes times each List and Status call listCalls times on a node
// of size containers.
func listCallTimes(e *env, size int, pods, ids []string, tag string) error {
	time.Sleep(time.Second)
	label := func(s string) string { return fmt.Sprintf("%s %d ctrs/%d pods%s", s, size, len(pods), tag) }
	measure := func(call func(i int) error) ([]time.Duration, error) {
		var ds []time.Duration
		for i := 0; i < listCalls; i++ {
			start := time.Now()
			if err := call(i); err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(start))
		}
		return ds, nil
	}
	var last *runtimeapi.ListContainersResponse
	ds, err := measure(func(int) error {
		r, err := e.runtime.ListContainers(e.ctx, &runtimeapi.ListContainersRequest{})
		if err == nil && len(r.Containers) < size {
			err = fmt.Errorf("ListContainers: %d containers, want %d", len(r.Containers), size)
		}
		last = r
		return err
	})
	if err != nil {
		return err
	}
	summary(label("ListContainers"), ds)
	// The client's own share: decoding the reply (a kubelet pays it too).
	if b, err := proto.Marshal(last); err == nil {
		var dec []time.Duration
		for range listCalls {
			start := time.Now()
			if err := proto.Unmarshal(b, &runtimeapi.ListContainersResponse{}); err != nil {
				return err
			}
			dec = append(dec, time.Since(start))
		}
		summary(label(fmt.Sprintf("ListContainers reply decode (%d KB, client)", len(b)>>10)), dec)
	}
	ds, err = measure(func(i int) error {
		_, err := e.runtime.ListContainers(e.ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pods[i%len(pods)]}})
		return err
	})
	if err != nil {
		return err
	}
	summary(label("ListContainers(pod)"), ds)
	ds, err = measure(func(int) error {
		_, err := e.runtime.ListPodSandbox(e.ctx, &runtimeapi.ListPodSandboxRequest{})
		return err
	})
	if err != nil {
		return err
	}
	summary(label("ListPodSandbox"), ds)
	ds, err = measure(func(i int) error {
		_, err := e.runtime.ContainerStatus(e.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ids[i%len(ids)]})
		return err
	})
	if err != nil {
		return err
	}
	summary(label("ContainerStatus"), ds)
	ds, err = measure(func(i int) error {
		_, err := e.runtime.PodSandboxStatus(e.ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pods[i%len(pods)]})
		return err
	})
	if err != nil {
		return err
	}
	summary(label("PodSandboxStatus"), ds)
	return nil
}
