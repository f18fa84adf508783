package container

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/spec"
)

func TestExitReason(t *testing.T) {
	for _, c := range []struct {
		code int
		oom  bool
		want string
	}{
		{0, false, ReasonCompleted},
		{1, false, ReasonError},
		{137, false, ReasonError},
		{137, true, ReasonOOMKilled},
		{0, true, ReasonOOMKilled},
	} {
		if got := exitReason(c.code, c.oom); got != c.want {
			t.Errorf("exitReason(%d, %v) = %q, want %q", c.code, c.oom, got, c.want)
		}
	}
}

func TestApplyStateKeepsStartError(t *testing.T) {
	r := &Record{Status: Status{State: Exited, Reason: ReasonStartError}}
	setExited(r, time.Time{}, 127, false)
	if r.Status.Reason != ReasonStartError || r.Status.ExitCode != 127 || r.Status.FinishedAt.IsZero() {
		t.Errorf("status = %+v", r.Status)
	}
	r = &Record{Status: Status{State: Running, Pid: 5}}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	applyState(r, &shim.ContainerState{Status: shim.StatusExited, Pid: 5, ExitCode: 137, OOMKilled: true, FinishedAt: at})
	if r.Status.State != Exited || r.Status.Reason != ReasonOOMKilled || r.Status.ExitCode != 137 || !r.Status.FinishedAt.Equal(at) {
		t.Errorf("status = %+v", r.Status)
	}
}

func TestSignalOf(t *testing.T) {
	for in, want := range map[string]unix.Signal{
		"": unix.SIGTERM, "SIGTERM": unix.SIGTERM, "TERM": unix.SIGTERM, "sigint": unix.SIGINT,
		"9": unix.SIGKILL, "SIGQUIT": unix.SIGQUIT, "SIGUSR1": unix.SIGUSR1,
	} {
		got, err := signalOf(in)
		if err != nil || got != want {
			t.Errorf("signalOf(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"SIGNOPE", "0", "99", "-1"} {
		if _, err := signalOf(bad); err == nil {
			t.Errorf("signalOf(%q) succeeded", bad)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	r := &Record{ID: "abcdef", PodID: "123456", Labels: map[string]string{"app": "web", "tier": "front"}, Status: Status{State: Running}}
	running, exited := Running, Exited
	for _, c := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{ID: "abc"}, true},
		{Filter{ID: "abcdef"}, true},
		{Filter{ID: "abd"}, false},
		{Filter{PodID: "123"}, true},
		{Filter{PodID: "124"}, false},
		{Filter{State: &running}, true},
		{Filter{State: &exited}, false},
		{Filter{LabelSelector: map[string]string{"app": "web"}}, true},
		{Filter{LabelSelector: map[string]string{"app": "web", "tier": "front"}}, true},
		{Filter{LabelSelector: map[string]string{"app": "db"}}, false},
		{Filter{LabelSelector: map[string]string{"missing": ""}}, false},
		{Filter{ID: "abc", PodID: "123", State: &running, LabelSelector: map[string]string{"tier": "front"}}, true},
	} {
		if got := c.f.Match(r); got != c.want {
			t.Errorf("%+v.Match = %v, want %v", c.f, got, c.want)
		}
	}
}

func TestRate(t *testing.T) {
	t0 := time.Unix(100, 0)
	if got := rate(cpuSample{}, cpuSample{at: t0, usage: 5}, false); got != 0 {
		t.Errorf("first sample rate = %d", got)
	}
	// Half a core for two seconds.
	if got := rate(cpuSample{at: t0, usage: 1e9}, cpuSample{at: t0.Add(2 * time.Second), usage: 2e9}, true); got != 5e8 {
		t.Errorf("rate = %d, want 5e8", got)
	}
	if got := rate(cpuSample{at: t0, usage: 9}, cpuSample{at: t0.Add(time.Second), usage: 3}, true); got != 0 {
		t.Errorf("rate after a counter reset = %d", got)
	}
}

func TestValidate(t *testing.T) {
	good := func() *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			LogPath:  "c/0.log",
			Mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/tmp"}},
		}
	}
	if err := validate("pod", good()); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, mutate := range map[string]func(*runtimeapi.ContainerConfig){
		"no metadata":        func(c *runtimeapi.ContainerConfig) { c.Metadata = nil },
		"no name":            func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" },
		"no image":           func(c *runtimeapi.ContainerConfig) { c.Image = nil },
		"absolute log path":  func(c *runtimeapi.ContainerConfig) { c.LogPath = "/var/log/x.log" },
		"escaping log path":  func(c *runtimeapi.ContainerConfig) { c.LogPath = "../x.log" },
		"relative mount":     func(c *runtimeapi.ContainerConfig) { c.Mounts[0].ContainerPath = "data" },
		"mount without host": func(c *runtimeapi.ContainerConfig) { c.Mounts[0].HostPath = "" },
	} {
		c := good()
		mutate(c)
		if err := validate("pod", c); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
	}
	if err := validate("", good()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no pod id: err = %v", err)
	}
}

func TestLinuxResources(t *testing.T) {
	r, err := spec.Resources(&runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 20000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if r.CPU == nil || *r.CPU.Shares != 512 || *r.CPU.Quota != 20000 || *r.CPU.Period != 100000 || r.CPU.Cpus != "0" {
		t.Errorf("cpu = %+v", r.CPU)
	}
	if r.Memory == nil || *r.Memory.Limit != 64<<20 {
		t.Errorf("memory = %+v", r.Memory)
	}
	if r.Devices != nil {
		t.Errorf("an update carries device rules: %+v", r.Devices)
	}
	if _, err := spec.Resources(&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 10 << 20, MemorySwapLimitInBytes: 5 << 20}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("swap below memory: err = %v", err)
	}
}

func TestFollowPod(t *testing.T) {
	shared := &Pod{Namespaces: spec.Namespaces{Net: "/n", IPC: "/i", UTS: "/u", PID: "/p"}}
	own := &Pod{Namespaces: spec.Namespaces{Net: "/n", IPC: "/i", UTS: "/u"}}
	host := &Pod{}
	opts := func(c *runtimeapi.ContainerConfig) *runtimeapi.NamespaceOption {
		return c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	}
	bare := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}
	if got := followPod(bare, shared); got != bare {
		t.Errorf("a config that agrees with its pod was copied")
	}
	got := opts(followPod(bare, own))
	if got.GetPid() != runtimeapi.NamespaceMode_CONTAINER || got.GetNetwork() != runtimeapi.NamespaceMode_POD {
		t.Errorf("pod without shared PID: %v", got)
	}
	if bare.Linux != nil {
		t.Errorf("the request was changed")
	}
	got = opts(followPod(bare, host))
	if got.GetNetwork() != runtimeapi.NamespaceMode_NODE || got.GetIpc() != runtimeapi.NamespaceMode_NODE || got.GetPid() != runtimeapi.NamespaceMode_CONTAINER {
		t.Errorf("host pod: %v", got)
	}
	target := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "x"},
	}}}
	if got := opts(followPod(target, own)); got.GetPid() != runtimeapi.NamespaceMode_TARGET || got.GetTargetId() != "x" {
		t.Errorf("target: %v", got)
	}
}
