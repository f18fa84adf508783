package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// callTimeout bounds one CRI call of the stress test: a hang, not a speed.
const callTimeout = 3 * time.Minute

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// burnCPU keeps every CPU busy until the test ends, so that berthd, the
// shims and the inits are descheduled in the middle of what they do.
func burnCPU(t *testing.T) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 * runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if n%1_000_000 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// watchExits does what the kubelet's relist does (ListContainers, then
// ContainerStatus of each listed container, again and again) and reports
// every container it saw exited without having run.
func watchExits(e *ctrEnv) (stop func() []string) {
	done := make(chan struct{})
	var bad []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	var once sync.Once
	seen := map[string]bool{}
	// Two of them, newest first, to read containers still being made.
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			poll(e, done, func(st *runtimeapi.ContainerStatus) {
				mu.Lock()
				defer mu.Unlock()
				if seen[st.Id] {
					return
				}
				seen[st.Id] = true
				if st.StartedAt == 0 || st.ExitCode != 0 {
					bad = append(bad, fmt.Sprintf("%s: exited before it ran: code %d, reason %q, message %q", st.Metadata.GetName(), st.ExitCode, st.Reason, st.Message))
				}
			})
		}()
	}
	return func() []string {
		once.Do(func() { close(done) })
		wg.Wait()
		return bad
	}
}

// poll lists the containers and reads the status of each, newest first,
// until done; exited gets every exited status.
func poll(e *ctrEnv, done <-chan struct{}, exited func(*runtimeapi.ContainerStatus)) {
	for {
		select {
		case <-done:
			return
		default:
		}
		ctx, cancel := callCtx()
		list, err := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		cs := list.GetContainers()
		for i := len(cs) - 1; i >= 0 && err == nil; i-- {
			resp, serr := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cs[i].Id})
			if serr == nil && resp.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
				exited(resp.Status)
			}
		}
		cancel()
	}
}

// TestContainerCreateStartUnderLoad creates and at once starts many
// containers in parallel, with every CPU busy and a kubelet-like poller
// reading their status all along: none may ever be reported exited before
// it ran (issue 20: a status read while the shim was still creating the
// container took "the shim does not know it" for a lost exit).
func TestContainerCreateStartUnderLoad(t *testing.T) {
	requireRoot(t)
	const pods, perPod, rounds = 3, 10, 3
	e := newCtrEnv(t)
	type pod struct {
		id  string
		cfg *runtimeapi.PodSandboxConfig
	}
	var ps []pod
	for i := range pods {
		id, cfg := e.pod(t, fmt.Sprintf("stress-%d", i))
		ps = append(ps, pod{id, cfg})
	}
	burnCPU(t)
	stopWatch := watchExits(e)
	t.Cleanup(func() { stopWatch() })

	for round := range rounds {
		var wg sync.WaitGroup
		ids := make(chan string, pods*perPod)
		for _, p := range ps {
			for i := range perPod {
				name := fmt.Sprintf("c%d-%d", round, i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if id, err := createAndStart(e, p.id, p.cfg, name); err != nil {
						t.Errorf("pod %s: %v", p.cfg.Metadata.Name, err)
					} else {
						ids <- id
					}
				}()
			}
		}
		wg.Wait()
		close(ids)
		for id := range ids {
			ranAndRemove(t, e, id)
		}
		if t.Failed() {
			break
		}
	}
	for _, b := range stopWatch() {
		t.Error(b)
	}
}

// createAndStart makes a container that prints its name and exits, checks
// that it is created, and starts it at once.
func createAndStart(e *ctrEnv, podID string, podCfg *runtimeapi.PodSandboxConfig, name string) (string, error) {
	ctx, cancel := callCtx()
	defer cancel()
	cfg := ctrConfig(name, "echo", "ran "+name)
	resp, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		return "", fmt.Errorf("CreateContainer %s: %w", name, err)
	}
	id := resp.ContainerId
	st, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return id, fmt.Errorf("ContainerStatus %s after create: %w", name, err)
	}
	if s := st.Status; s.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		return id, fmt.Errorf("%s after create is %v (code %d, %s: %s), want CREATED", name, s.State, s.ExitCode, s.Reason, s.Message)
	}
	if _, err := e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		return id, fmt.Errorf("StartContainer %s: %w", name, err)
	}
	return id, nil
}

// ranAndRemove waits for the container's exit, checks that it ran (exit 0,
// its line in its log) and removes it.
func ranAndRemove(t *testing.T, e *ctrEnv, id string) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	deadline := time.Now().Add(callTimeout)
	var st *runtimeapi.ContainerStatus
	for {
		resp, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("ContainerStatus %s: %v", id, err)
		}
		st = resp.Status
		if st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s to exit: still %v after %v", st.Metadata.Name, st.State, callTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	name := st.Metadata.Name
	if st.ExitCode != 0 || st.StartedAt == 0 {
		t.Errorf("%s exited with %d (%s: %s), started at %d; want 0 after it ran", name, st.ExitCode, st.Reason, st.Message, st.StartedAt)
	}
	if lines := logLines(t, st.LogPath); !slices.Contains(lines, "stdout F ran "+name) {
		t.Errorf("%s's log %s holds %q, not its line", name, filepath.Base(st.LogPath), lines)
	}
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("RemoveContainer %s: %v", name, err)
	}
}
