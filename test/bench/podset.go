package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var setupWorkers = flag.Int("setup-workers", 4, "memory, scale and churn benchmarks: RunPodSandbox/CreateContainer calls in flight while filling the node")

// podSet is the pods one benchmark made, each with its running
// containers; remove ends them all, whatever failed before.
type podSet struct {
	e      *env
	run    string
	logDir string

	mu   sync.Mutex
	pods []benchPod
	next int
}

type benchPod struct {
	id         string
	cfg        *runtimeapi.PodSandboxConfig
	containers []string
}

// callTimes collects per-call latencies from concurrent workers.
type callTimes struct {
	mu sync.Mutex
	by map[string][]time.Duration
}

func (c *callTimes) add(call string, d time.Duration) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[string][]time.Duration{}
	}
	c.by[call] = append(c.by[call], d)
}

func (c *callTimes) get(call string) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by[call]
}

func newPodSet(e *env, run string) (*podSet, error) {
	if err := ensureImage(e, *containerImage); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "berth-bench-logs-")
	if err != nil {
		return nil, err
	}
	return &podSet{e: e, run: run, logDir: dir}, nil
}

func ensureImage(e *env, image string) error {
	spec := &runtimeapi.ImageSpec{Image: image}
	if st, err := e.images.ImageStatus(e.ctx, &runtimeapi.ImageStatusRequest{Image: spec}); err == nil && st.GetImage() != nil {
		return nil
	}
	if _, err := e.images.PullImage(e.ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
		return fmt.Errorf("pull %s: %w", image, err)
	}
	return nil
}

// addPod runs one pod with n running containers, timing each call into
// times (nil: not timed).
func (s *podSet) addPod(ctx context.Context, n int, times *callTimes) (benchPod, error) {
	s.mu.Lock()
	i := s.next
	s.next++
	s.mu.Unlock()
	cfg := podConfig(s.run, i)
	cfg.LogDirectory = fmt.Sprintf("%s/%d", s.logDir, i)
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return benchPod{}, err
	}
	start := time.Now()
	resp, err := s.e.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return benchPod{}, fmt.Errorf("RunPodSandbox: %w", err)
	}
	times.add("RunPodSandbox", time.Since(start))
	p := benchPod{id: resp.PodSandboxId, cfg: cfg}
	s.mu.Lock()
	s.pods = append(s.pods, p)
	s.mu.Unlock()
	for c := 0; c < n; c++ {
		id, err := s.addContainer(ctx, &p, c, times)
		if err != nil {
			return p, err
		}
		p.containers = append(p.containers, id)
	}
	s.mu.Lock()
	for k := range s.pods {
		if s.pods[k].id == p.id {
			s.pods[k] = p
		}
	}
	s.mu.Unlock()
	return p, nil
}

func (s *podSet) addContainer(ctx context.Context, p *benchPod, c int, times *callTimes) (string, error) {
	start := time.Now()
	resp, err := s.e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.id, Config: containerConfig(fmt.Sprintf("c%d", c)), SandboxConfig: p.cfg,
	})
	if err != nil {
		return "", fmt.Errorf("CreateContainer: %w", err)
	}
	created := time.Now()
	times.add("CreateContainer", created.Sub(start))
	if _, err := s.e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		return "", fmt.Errorf("StartContainer: %w", err)
	}
	times.add("StartContainer", time.Since(created))
	return resp.ContainerId, nil
}

// grow adds pods until the set has n, with containers running in each,
// -setup-workers at a time.
func (s *podSet) grow(n, containers int, times *callTimes) error {
	s.mu.Lock()
	todo := n - len(s.pods)
	s.mu.Unlock()
	return parallel(todo, *setupWorkers, func(int) error {
		_, err := s.addPod(s.e.ctx, containers, times)
		return err
	})
}

// fill brings every pod to n containers.
func (s *podSet) fill(n int) error {
	s.mu.Lock()
	pods := append([]benchPod(nil), s.pods...)
	s.mu.Unlock()
	return parallel(len(pods), *setupWorkers, func(i int) error {
		p := pods[i]
		for c := len(p.containers); c < n; c++ {
			id, err := s.addContainer(s.e.ctx, &p, c, nil)
			if err != nil {
				return err
			}
			p.containers = append(p.containers, id)
		}
		s.mu.Lock()
		s.pods[i] = p
		s.mu.Unlock()
		return nil
	})
}

// execAll runs `true` n times in each pod's first container, the pods in
// parallel.
func (s *podSet) execAll(n int) error {
	if n == 0 {
		return nil
	}
	s.mu.Lock()
	pods := append([]benchPod(nil), s.pods...)
	s.mu.Unlock()
	return parallel(len(pods), 4, func(i int) error {
		if len(pods[i].containers) == 0 {
			return nil
		}
		for range n {
			resp, err := s.e.runtime.ExecSync(s.e.ctx, &runtimeapi.ExecSyncRequest{ContainerId: pods[i].containers[0], Cmd: []string{"true"}, Timeout: 10})
			if err != nil {
				return fmt.Errorf("ExecSync: %w", err)
			}
			if resp.ExitCode != 0 {
				return fmt.Errorf("ExecSync true: exit %d", resp.ExitCode)
			}
		}
		return nil
	})
}

func (s *podSet) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.pods {
		out = append(out, p.id)
	}
	return out
}

// removePod stops and removes one pod (and so its containers), timing
// the two calls.
func (s *podSet) removePod(ctx context.Context, id string, times *callTimes) error {
	start := time.Now()
	if _, err := s.e.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	stopped := time.Now()
	times.add("StopPodSandbox", stopped.Sub(start))
	if _, err := s.e.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	times.add("RemovePodSandbox", time.Since(stopped))
	s.mu.Lock()
	for k := range s.pods {
		if s.pods[k].id == id {
			s.pods = append(s.pods[:k], s.pods[k+1:]...)
			break
		}
	}
	s.mu.Unlock()
	return nil
}

// remove ends every pod of the set, also after the run's context ended
// (an interrupted bench leaves nothing behind), and its log dir.
func (s *podSet) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ids := s.ids()
	err := parallel(len(ids), *setupWorkers, func(i int) error {
		return s.removePod(ctx, ids[i], nil)
	})
	if rmErr := os.RemoveAll(s.logDir); err == nil {
		err = rmErr
	}
	return err
}

// parallel runs f(0..n-1) with at most workers at a time and returns the
// first error; after an error no new call starts.
func parallel(n, workers int, f func(i int) error) error {
	if workers < 1 {
		workers = 1
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}
