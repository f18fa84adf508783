package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// eventLog collects a GetContainerEvents stream.
type eventLog struct {
	mu     sync.Mutex
	events []*runtimeapi.ContainerEventResponse
	err    error
}

func subscribe(t *testing.T, rt runtimeapi.RuntimeServiceClient) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	l := &eventLog{}
	go func() {
		for {
			e, err := stream.Recv()
			l.mu.Lock()
			if err != nil {
				l.err = err
				l.mu.Unlock()
				return
			}
			l.events = append(l.events, e)
			l.mu.Unlock()
		}
	}()
	return l
}

// of lists the event types of one container (or pod) id, in order.
func (l *eventLog) of(id string) []runtimeapi.ContainerEventType {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []runtimeapi.ContainerEventType
	for _, e := range l.events {
		if e.ContainerId == id {
			out = append(out, e.ContainerEventType)
		}
	}
	return out
}

func (l *eventLog) find(id string, typ runtimeapi.ContainerEventType) *runtimeapi.ContainerEventResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.ContainerId == id && e.ContainerEventType == typ {
			return e
		}
	}
	return nil
}

// waitFor waits until the log holds want for id (and nothing else for it).
func (l *eventLog) waitFor(t *testing.T, id string, want ...runtimeapi.ContainerEventType) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := l.of(id)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			l.mu.Lock()
			err := l.err
			l.mu.Unlock()
			t.Fatalf("events of %.12s: %v, want %v (stream error %v)", id, got, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var lifecycle = []runtimeapi.ContainerEventType{
	runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

func containerIn(e *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, s := range e.ContainersStatuses {
		if s.Id == id {
			return s
		}
	}
	return nil
}

func TestContainerEvents(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)
	a, b := subscribe(t, e.d.Runtime), subscribe(t, e.d.Runtime)

	podID, podCfg := e.pod(t, "events")
	id := e.create(t, podID, podCfg, ctrConfig("sleeper", "sleep", "3600"))
	if _, err := e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	// A container that ends by itself gets its stopped event too, with its
	// exit code.
	quitter := e.run(t, podID, podCfg, ctrConfig("quitter", "sh", "-c", "exit 3"))
	// Ended before the pod stops (which would kill it: exit 137).
	e.waitState(t, quitter, runtimeapi.ContainerState_CONTAINER_EXITED, 10*time.Second)
	removePod(t, e.d, podID)

	for name, l := range map[string]*eventLog{"first": a, "second": b} {
		t.Run(name, func(t *testing.T) {
			l.waitFor(t, id, lifecycle...)
			l.waitFor(t, quitter, lifecycle...)
			l.waitFor(t, podID, lifecycle...)
			// Statuses as they were at each event.
			want := map[runtimeapi.ContainerEventType]runtimeapi.ContainerState{
				runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT: runtimeapi.ContainerState_CONTAINER_CREATED,
				runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT: runtimeapi.ContainerState_CONTAINER_RUNNING,
				runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT: runtimeapi.ContainerState_CONTAINER_EXITED,
			}
			for typ, st := range want {
				ev := l.find(id, typ)
				cs := containerIn(ev, id)
				if cs == nil || cs.State != st || cs.Metadata.GetName() != "sleeper" {
					t.Errorf("%v: container status %v, want state %v", typ, cs, st)
				}
				if ev.PodSandboxStatus.GetId() != podID || ev.PodSandboxStatus.State != runtimeapi.PodSandboxState_SANDBOX_READY {
					t.Errorf("%v: pod status %v", typ, ev.PodSandboxStatus)
				}
				if ev.CreatedAt == 0 {
					t.Errorf("%v: no time", typ)
				}
			}
			if ev := l.find(id, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT); containerIn(ev, id) != nil {
				t.Errorf("deleted container still listed: %v", ev.ContainersStatuses)
			}
			if cs := containerIn(l.find(quitter, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT), quitter); cs == nil || cs.ExitCode != 3 {
				t.Errorf("quitter's stopped event: %v", cs)
			}
			for typ, ready := range map[runtimeapi.ContainerEventType]bool{
				runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT: true,
				runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT: false,
				runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT: false,
			} {
				ps := l.find(podID, typ).PodSandboxStatus
				if ps.GetId() != podID || (ps.State == runtimeapi.PodSandboxState_SANDBOX_READY) != ready || ps.Metadata.GetName() != "events" {
					t.Errorf("pod %v event: status %v", typ, ps)
				}
			}
		})
	}

	// Under load: containers of several pods go through their lives at
	// once; both subscribers see every event of each, in order.
	const pods, perPod = 3, 4
	var wg sync.WaitGroup
	ids := make(chan string, pods*perPod+pods)
	for p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid, pcfg := e.pod(t, fmt.Sprintf("load-%d", p))
			ids <- pid
			var cwg sync.WaitGroup
			for c := range perPod {
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					cid := e.run(t, pid, pcfg, ctrConfig(fmt.Sprintf("c%d", c), "sleep", "3600"))
					ids <- cid
					if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: cid}); err != nil {
						t.Error(err)
					}
					if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: cid}); err != nil {
						t.Error(err)
					}
				}()
			}
			cwg.Wait()
			removePod(t, e.d, pid)
		}()
	}
	wg.Wait()
	close(ids)
	n := 0
	for id := range ids {
		n++
		a.waitFor(t, id, lifecycle...)
		b.waitFor(t, id, lifecycle...)
	}
	if n != pods*perPod+pods {
		t.Fatalf("%d objects", n)
	}
	a.mu.Lock()
	t.Logf("%d events delivered to each subscriber", len(a.events))
	a.mu.Unlock()
}
