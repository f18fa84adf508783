package cri

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
)

func TestContainerStateMapping(t *testing.T) {
	for st, want := range map[container.State]runtimeapi.ContainerState{
		container.Created: runtimeapi.ContainerState_CONTAINER_CREATED,
		container.Running: runtimeapi.ContainerState_CONTAINER_RUNNING,
		container.Exited:  runtimeapi.ContainerState_CONTAINER_EXITED,
		container.Unknown: runtimeapi.ContainerState_CONTAINER_UNKNOWN,
	} {
		if got := containerState(st); got != want {
			t.Errorf("containerState(%v) = %v, want %v", st, got, want)
		}
		if back := stateOf(want); back != st {
			t.Errorf("stateOf(%v) = %v, want %v", want, back, st)
		}
	}
}

func TestContainerFilter(t *testing.T) {
	f := containerFilter(&runtimeapi.ContainerFilter{
		Id: "abc", PodSandboxId: "p1", LabelSelector: map[string]string{"a": "b"},
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED},
	})
	if f.ID != "abc" || f.PodID != "p1" || f.LabelSelector["a"] != "b" || f.State == nil || *f.State != container.Exited {
		t.Errorf("filter = %+v", f)
	}
	// CONTAINER_CREATED is 0: a state filter asking for it is still a filter.
	f = containerFilter(&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{}})
	if f.State == nil || *f.State != container.Created {
		t.Errorf("created filter = %+v", f)
	}
	if f := containerFilter(nil); f.State != nil || f.ID != "" {
		t.Errorf("nil filter = %+v", f)
	}
}

func TestStopSignal(t *testing.T) {
	for name, want := range map[string]runtimeapi.Signal{
		"":        runtimeapi.Signal_SIGNAL_SIGTERM,
		"SIGTERM": runtimeapi.Signal_SIGNAL_SIGTERM,
		"SIGQUIT": runtimeapi.Signal_SIGNAL_SIGQUIT,
		"INT":     runtimeapi.Signal_SIGNAL_SIGINT,
		"sigusr1": runtimeapi.Signal_SIGNAL_SIGUSR1,
		"15":      runtimeapi.Signal_SIGNAL_SIGTERM,
		"SIGNOPE": runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT,
	} {
		if got := stopSignal(name); got != want {
			t.Errorf("stopSignal(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestContainerStatusFields(t *testing.T) {
	created := time.Unix(100, 0)
	r := &container.Record{
		ID: "c1", PodID: "p1", Name: "web", Attempt: 2, Image: "busybox", ImageID: "sha256:aa", ImageRef: "busybox@sha256:bb",
		LogPath: "/logs/web.log", StopSignal: "SIGQUIT", UID: 1000, GID: 1000, SupplementalGIDs: []int64{5},
		Mounts:    []container.Mount{{ContainerPath: "/data", HostPath: "/srv", Readonly: true, Propagation: int32(runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER)}},
		Resources: &container.Resources{MemoryLimit: 1 << 20, CPUShares: 2},
		Status:    container.Status{State: container.Exited, CreatedAt: created, ExitCode: 137, Reason: "OOMKilled"},
	}
	st := containerStatus(r)
	if st.Id != "c1" || st.Metadata.Name != "web" || st.Metadata.Attempt != 2 || st.State != runtimeapi.ContainerState_CONTAINER_EXITED ||
		st.CreatedAt != created.UnixNano() || st.StartedAt != 0 || st.FinishedAt != 0 || st.ExitCode != 137 || st.Reason != "OOMKilled" {
		t.Errorf("status = %v", st)
	}
	if st.ImageRef != "busybox@sha256:bb" || st.ImageId != "sha256:aa" || st.Image.Image != "busybox" || st.LogPath != "/logs/web.log" || st.StopSignal != runtimeapi.Signal_SIGNAL_SIGQUIT {
		t.Errorf("image/log/signal = %v", st)
	}
	if u := st.User.GetLinux(); u.Uid != 1000 || u.Gid != 1000 || len(u.SupplementalGroups) != 1 {
		t.Errorf("user = %v", st.User)
	}
	if len(st.Mounts) != 1 || !st.Mounts[0].Readonly || st.Mounts[0].Propagation != runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER {
		t.Errorf("mounts = %v", st.Mounts)
	}
	if st.Resources.GetLinux().GetMemoryLimitInBytes() != 1<<20 || st.Resources.GetLinux().GetCpuShares() != 2 {
		t.Errorf("resources = %v", st.Resources)
	}
}
