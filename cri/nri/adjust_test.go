package nri

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	api "github.com/containerd/nri/pkg/api"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin", "DROP=1"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: "/run/ns/net"}},
			Resources:  &specs.LinuxResources{},
		},
	}
}

type fakeCDI struct{ got []string }

func (f *fakeCDI) InjectDevices(s *specs.Spec, devices ...string) error {
	f.got = append(f.got, devices...)
	for _, d := range devices {
		if d == "vendor.com/gpu=unknown" {
			return errors.New("unresolvable CDI device vendor.com/gpu=unknown")
		}
	}
	s.Process.Env = append(s.Process.Env, "CDI=1")
	return nil
}

func TestAdjustAppliesWhatARequestWould(t *testing.T) {
	cdi := &fakeCDI{}
	n := &NRI{metrics: newPluginMetrics(), deps: Deps{CDI: cdi}}
	s := baseSpec()
	a := &api.ContainerAdjustment{}
	a.AddEnv("NEW", "v")
	a.RemoveEnv("DROP")
	a.AddAnnotation("k", "v")
	a.AddMount(&api.Mount{Destination: "/data", Source: "/srv/data", Type: "bind", Options: []string{"rbind", "ro"}})
	a.AddDevice(&api.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229})
	a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"})
	a.AddRlimit("RLIMIT_NOFILE", 200, 100)
	oom := -500
	a.SetLinuxOomScoreAdj(&oom)
	a.SetLinuxMemoryLimit(128 << 20)
	a.SetLinuxCPUSetCPUs("0")
	a.SetLinuxCPUShares(512)
	a.AddLinuxUnified("memory.high", "100000000")
	a.SetArgs([]string{"sh", "-c", "true"})
	a.RemoveNamespace(&api.LinuxNamespace{Type: "pid"})
	if err := n.adjust1(s, a); err != nil {
		t.Fatal(err)
	}
	env := strings.Join(s.Process.Env, " ")
	if !strings.Contains(env, "NEW=v") || strings.Contains(env, "DROP=") || !strings.Contains(env, "CDI=1") {
		t.Errorf("env %v", s.Process.Env)
	}
	if strings.Join(cdi.got, ",") != "vendor.com/gpu=0" {
		t.Errorf("CDI devices asked %v", cdi.got)
	}
	var data bool
	for _, m := range s.Mounts {
		data = data || (m.Destination == "/data" && m.Source == "/srv/data")
	}
	if s.Annotations["k"] != "v" || len(s.Mounts) != 2 || !data {
		t.Errorf("annotations %v mounts %v", s.Annotations, s.Mounts)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/fuse" {
		t.Errorf("devices %v", s.Linux.Devices)
	}
	if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0].Soft != 100 || *s.Process.OOMScoreAdj != -500 {
		t.Errorf("rlimits %v oom %v", s.Process.Rlimits, s.Process.OOMScoreAdj)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 128<<20 || r.CPU.Cpus != "0" || *r.CPU.Shares != 512 || r.Unified["memory.high"] != "100000000" {
		t.Errorf("resources %+v %+v %v", r.Memory, r.CPU, r.Unified)
	}
	if strings.Join(s.Process.Args, " ") != "sh -c true" {
		t.Errorf("args %v", s.Process.Args)
	}
	if len(s.Linux.Namespaces) != 1 || s.Linux.Namespaces[0].Type != "network" {
		t.Errorf("namespaces %v", s.Linux.Namespaces)
	}
}

func TestAdjustRefusesWhatCannotBeDone(t *testing.T) {
	for name, c := range map[string]struct {
		adjust func(a *api.ContainerAdjustment)
		cdi    CDIInjector
		want   string
	}{
		"hooks ok":      {func(a *api.ContainerAdjustment) { a.AddHooks(&api.Hooks{StartContainer: []*api.Hook{{Path: "/x"}}}) }, nil, ""},
		"in-ctr path":   {func(a *api.ContainerAdjustment) { a.AddHooks(&api.Hooks{CreateContainer: []*api.Hook{{Path: "x"}}}) }, nil, "absolute"},
		"hook path":     {func(a *api.ContainerAdjustment) { a.AddHooks(&api.Hooks{Poststart: []*api.Hook{{Path: "x"}}}) }, nil, "absolute"},
		"node hooks ok": {func(a *api.ContainerAdjustment) { a.AddHooks(&api.Hooks{Poststop: []*api.Hook{{Path: "/bin/true"}}}) }, nil, ""},
		"device":        {func(a *api.ContainerAdjustment) { a.AddDevice(&api.LinuxDevice{Path: "/etc/shadow", Type: "c"}) }, nil, "/etc/shadow"},
		"env":           {func(a *api.ContainerAdjustment) { a.AddEnv("A=B", "c") }, nil, "A=B"},
		"mount": {func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Destination: "rel", Source: "/x", Type: "bind"})
		}, nil, "rel"},
		"rlimit":         {func(a *api.ContainerAdjustment) { a.AddRlimit("RLIMIT_NOFILE", 1, 2) }, nil, "soft 2 above hard 1"},
		"oom":            {func(a *api.ContainerAdjustment) { o := 5000; a.SetLinuxOomScoreAdj(&o) }, nil, "5000"},
		"cpuset":         {func(a *api.ContainerAdjustment) { a.SetLinuxCPUSetCPUs("0-x") }, nil, "0-x"},
		"cdi":            {func(a *api.ContainerAdjustment) { a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"}) }, nil, "vendor.com/gpu=0"},
		"cdi-unknown":    {func(a *api.ContainerAdjustment) { a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=unknown"}) }, &fakeCDI{}, "vendor.com/gpu=unknown"},
		"io priority":    {func(a *api.ContainerAdjustment) { a.SetLinuxIOPriority(&api.LinuxIOPriority{Priority: 1}) }, nil, "I/O priority"},
		"empty hooks ok": {func(a *api.ContainerAdjustment) { a.Hooks = &api.Hooks{} }, nil, ""},
	} {
		t.Run(name, func(t *testing.T) {
			n := &NRI{metrics: newPluginMetrics(), deps: Deps{CDI: c.cdi}}
			a := &api.ContainerAdjustment{}
			c.adjust(a)
			err := n.adjust1(baseSpec(), a)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want InvalidArgument naming %q", err, c.want)
			}
		})
	}
}

func TestFailedNamesThePlugin(t *testing.T) {
	n := &NRI{metrics: newPluginMetrics()}
	since := time.Now()
	n.metrics.RecordPluginInvocation("10-ok", "CreateContainer", nil)
	n.metrics.RecordPluginInvocation("20-bad", "CreateContainer", errors.New("no"))
	for _, c := range []struct {
		err  error
		kind error
	}{
		{errors.New("no"), errdefs.ErrFailedPrecondition},
		{ttrpc.ErrClosed, errdefs.ErrUnavailable},
		{context.DeadlineExceeded, context.DeadlineExceeded},
	} {
		err := n.failed("CreateContainer", c.err, since)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), "plugin 20-bad") {
			t.Errorf("failed(%v) = %v, want %v naming plugin 20-bad", c.err, err, c.kind)
		}
	}
	if err := n.failed("CreateContainer", errors.New("conflict"), time.Now().Add(time.Second)); strings.Contains(err.Error(), "20-bad") {
		t.Errorf("an error after the plugin's failure is pinned on it: %v", err)
	}
	if _, seen := (&NRI{metrics: n.metrics}).Plugins(); len(seen) != 2 || seen[1].Errors != 1 {
		t.Errorf("plugins %+v", seen)
	}
}

func TestResourcesRoundTrip(t *testing.T) {
	r := &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 256, MemoryLimitInBytes: 1 << 30,
		CpusetCpus: "0-1", CpusetMems: "0", Unified: map[string]string{"memory.high": "1"},
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
	}
	got := criResources(nriResources(r))
	if got.String() != r.String() {
		t.Errorf("round trip\n got %v\nwant %v", got, r)
	}
	m := merged(r, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 2 << 30, Unified: map[string]string{"cpu.idle": "1"}})
	if m.MemoryLimitInBytes != 2<<30 || m.CpuShares != 256 || len(m.Unified) != 2 || r.MemoryLimitInBytes != 1<<30 {
		t.Errorf("merged %v (base now %v)", m, r)
	}
}
