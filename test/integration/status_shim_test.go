package integration

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// ContainerStatus answers from the record while the pod's shim is alive and
// the container's exit record is watched: a shim that does not answer (here
// stopped) does not hold the call, and the status is still current once
// the container exits or the shim dies.
func TestContainerStatusWithoutShimCall(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)
	pod, podCfg := e.pod(t, "status")
	sleeper := e.run(t, pod, podCfg, ctrConfig("sleeper", "sleep", "1000"))
	shimPid := inspectPod(t, e.d, pod).Pid
	if shimPid <= 1 {
		t.Fatalf("pod's shim pid %d", shimPid)
	}
	if err := unix.Kill(shimPid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont := func() {
		if stopped {
			_ = unix.Kill(shimPid, unix.SIGCONT)
			stopped = false
		}
	}
	defer cont()
	// The bound is on a hang: a call that asked the stopped shim would wait
	// for it until the call's deadline.
	cctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	resp, err := e.d.Runtime.ContainerStatus(cctx, &runtimeapi.ContainerStatusRequest{ContainerId: sleeper})
	cancel()
	if err != nil {
		t.Fatalf("status with the shim stopped: %v", err)
	}
	if st := resp.Status; st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.Id != sleeper {
		t.Errorf("status with the shim stopped: %v", st)
	}
	cont()

	// The container killed behind the shim's back: its exit reaches the
	// status.
	_, info := e.status(t, sleeper)
	pid, _ := info["pid"].(float64)
	if pid <= 1 {
		t.Fatalf("container pid %v", info["pid"])
	}
	if err := unix.Kill(int(pid), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st *runtimeapi.ContainerStatus
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if st, _ = e.status(t, sleeper); st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			break
		}
	}
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("status after the container was killed: %v exit %d", st.State, st.ExitCode)
	}

	// The pod's shim killed: a status sees it at once (through the shim's
	// pid), as before.
	other := e.run(t, pod, podCfg, ctrConfig("other", "sleep", "1000"))
	if err := unix.Kill(shimPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if st, _ = e.status(t, other); st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			break
		}
	}
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("status after the shim was killed: %v", st.State)
	}
	removePod(t, e.d, pod)
	e.nothingLeft(t)
}
