package integration

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// The List calls answer from berthd's records (no file read or shim call
// per container or pod), and the records follow what happens without
// anyone asking a Status: a container's exit, a pod's shim dying.
func TestListsFollowWithoutStatus(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)
	pod, podCfg := e.pod(t, "lists")
	quitter := e.run(t, pod, podCfg, ctrConfig("quitter", "sh", "-c", "sleep 0.5; exit 7"))
	sleeper := e.run(t, pod, podCfg, ctrConfig("sleeper", "sleep", "1000"))
	exited := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}
	var got []*runtimeapi.Container
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		resp, err := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: exited}})
		if err != nil {
			t.Fatal(err)
		}
		if got = resp.Containers; len(got) > 0 {
			break
		}
	}
	if len(got) != 1 || got[0].Id != quitter {
		t.Fatalf("exited containers listed: %v, want only %s", got, quitter)
	}
	resp, err := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
	if err != nil || len(resp.Containers) != 2 {
		t.Fatalf("containers of the pod: %v %v", resp, err)
	}
	for _, c := range resp.Containers {
		if c.Id == sleeper && c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("sleeper listed %v", c.State)
		}
	}
	st, _ := e.status(t, quitter)
	if st.ExitCode != 7 {
		t.Errorf("quitter exit code %d, want 7", st.ExitCode)
	}

	// The pod's shim killed: the pod is listed NotReady and its running
	// container exited (lost), without a Status call.
	shimPid := inspectPod(t, e.d, pod).Pid
	if shimPid <= 1 {
		t.Fatalf("pod's shim pid %d", shimPid)
	}
	_ = unix.Kill(shimPid, unix.SIGKILL)
	var podState runtimeapi.PodSandboxState
	var ctrState runtimeapi.ContainerState
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		pods, err := e.d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods: %v %v", pods, err)
		}
		ctrs, err := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: sleeper}})
		if err != nil || len(ctrs.Containers) != 1 {
			t.Fatalf("sleeper: %v %v", ctrs, err)
		}
		podState, ctrState = pods.Items[0].State, ctrs.Containers[0].State
		if podState == runtimeapi.PodSandboxState_SANDBOX_NOTREADY && ctrState == runtimeapi.ContainerState_CONTAINER_EXITED {
			break
		}
	}
	if podState != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || ctrState != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("after the shim was killed: pod %v, sleeper %v", podState, ctrState)
	}
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}
