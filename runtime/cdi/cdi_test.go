package cdi

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

const testSpec = `cdiVersion: "0.6.0"
kind: example.com/dev
containerEdits:
  env: ["EXAMPLE_VENDOR=1"]
devices:
- name: null0
  containerEdits:
    env: ["EXAMPLE_DEV=null0"]
    deviceNodes:
    - path: /dev/example-null0
      hostPath: /dev/null
    mounts:
    - hostPath: /etc/hostname
      containerPath: /etc/example-dev
      options: [ro, bind]
`

const hookSpec = `cdiVersion: "0.7.0"
kind: example.com/hooked
devices:
- name: h
  containerEdits:
    hooks:
    - hookName: createContainer
      path: /bin/true
    - hookName: startContainer
      path: /bin/true
- name: rdt
  containerEdits:
    intelRdt:
      closID: berth-test
- name: node
  containerEdits:
    hooks:
    - hookName: createRuntime
      path: /bin/true
      args: [true, cdi]
    - hookName: poststop
      path: /bin/true
`

func newRegistry(t *testing.T, files map[string]string) (*Registry, string) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New([]string{dir, filepath.Join(dir, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, dir
}

func TestRequested(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{
		CDIDevices: []*runtimeapi.CDIDevice{{Name: "example.com/dev=b"}, {Name: "example.com/dev=a"}},
		Annotations: map[string]string{
			"cdi.k8s.io/z":   "example.com/dev=c",
			"cdi.k8s.io/a":   "example.com/dev=a,example.com/dev=d",
			"unrelated/note": "example.com/dev=e",
		},
	}
	got, err := Requested(cfg)
	want := []string{"example.com/dev=b", "example.com/dev=a", "example.com/dev=d", "example.com/dev=c"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Requested = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []*runtimeapi.ContainerConfig{
		{CDIDevices: []*runtimeapi.CDIDevice{{Name: "nodevice"}}},
		{Annotations: map[string]string{"cdi.k8s.io/x": "example.com/dev"}},
	} {
		if _, err := Requested(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Requested(%v) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestInject(t *testing.T) {
	r, dir := newRegistry(t, map[string]string{"example.yaml": testSpec, "hooked.yaml": hookSpec})
	if got := r.Devices(); len(got) != 4 || got[0] != (Device{"example.com/dev=null0", filepath.Join(dir, "example.yaml")}) {
		t.Errorf("Devices = %v", got)
	}
	s := &specs.Spec{Process: &specs.Process{Env: []string{"PATH=/bin"}}, Linux: &specs.Linux{}}
	if err := r.InjectDevices(s, "example.com/dev=null0"); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"EXAMPLE_VENDOR=1", "EXAMPLE_DEV=null0", "PATH=/bin"} {
		if !slices.Contains(s.Process.Env, e) {
			t.Errorf("env %v lacks %s", s.Process.Env, e)
		}
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/example-null0" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
		t.Errorf("devices %+v, want /dev/example-null0 as 1:3", s.Linux.Devices)
	}
	if rules := s.Linux.Resources.Devices; len(rules) != 1 || !rules[0].Allow || *rules[0].Major != 1 || *rules[0].Minor != 3 {
		t.Errorf("device cgroup rules %+v", rules)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Destination != "/etc/example-dev" || s.Mounts[0].Source != "/etc/hostname" {
		t.Errorf("mounts %+v", s.Mounts)
	}

	// In a user namespace the node is bound from its host path.
	us := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UserNamespace}}}}
	if err := r.InjectDevices(us, "example.com/dev=null0"); err != nil {
		t.Fatal(err)
	}
	if len(us.Linux.Devices) != 0 || !slices.ContainsFunc(us.Mounts, func(m specs.Mount) bool {
		return m.Destination == "/dev/example-null0" && m.Source == "/dev/null" && m.Type == "bind"
	}) || len(us.Linux.Resources.Devices) != 1 {
		t.Errorf("user namespace: devices %+v mounts %+v rules %+v", us.Linux.Devices, us.Mounts, us.Linux.Resources.Devices)
	}

	// Unknown devices are named; a spec asking for Intel RDT is refused;
	// neither touches the spec.
	clean := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	err := r.InjectDevices(clean, "example.com/dev=null0", "example.com/dev=nope", "other.io/x=y")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !contains(err.Error(), "example.com/dev=nope") || !contains(err.Error(), "other.io/x=y") {
		t.Errorf("unknown devices: %v", err)
	}
	if err := r.InjectDevices(clean, "example.com/hooked=rdt"); !errors.Is(err, errdefs.ErrFailedPrecondition) || !contains(err.Error(), "Intel RDT") {
		t.Errorf("RDT: %v, want FailedPrecondition", err)
	}
	if len(clean.Process.Env) != 0 || len(clean.Linux.Devices) != 0 || len(clean.Mounts) != 0 {
		t.Errorf("a refused inject changed the spec: %+v", clean)
	}
	// Hooks berthd runs on the node and those the container's init runs
	// are applied.
	hooked := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	if err := r.InjectDevices(hooked, "example.com/hooked=node"); err != nil {
		t.Fatalf("node hooks: %v", err)
	}
	if h := hooked.Hooks; h == nil || len(h.CreateRuntime) != 1 || h.CreateRuntime[0].Path != "/bin/true" || len(h.Poststop) != 1 || len(h.CreateContainer) != 0 {
		t.Errorf("node hooks: %+v", h)
	}
	inContainer := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	if err := r.InjectDevices(inContainer, "example.com/hooked=h"); err != nil {
		t.Fatalf("in-container hooks: %v", err)
	}
	if h := inContainer.Hooks; h == nil || len(h.CreateContainer) != 1 || len(h.StartContainer) != 1 {
		t.Errorf("in-container hooks: %+v", h)
	}
	var nilReg *Registry
	if err := nilReg.Check([]string{"example.com/dev=null0"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil registry: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A spec written (or removed) after the start counts without a restart.
// No spec dirs is CDI off, not the library's default dirs.
func TestNoSpecDirs(t *testing.T) {
	r, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cache != nil {
		t.Error("a registry without spec dirs reads some (the library's defaults)")
	}
	if len(r.SpecDirs()) != 0 || len(r.Devices()) != 0 || len(r.Errors()) != 0 {
		t.Errorf("without spec dirs: dirs %v devices %v errors %v", r.SpecDirs(), r.Devices(), r.Errors())
	}
	if err := r.InjectDevices(&specs.Spec{}, "example.com/dev=null0"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a device without spec dirs: %v, want InvalidArgument", err)
	}
}

func TestSpecDirsWatched(t *testing.T) {
	r, dir := newRegistry(t, nil)
	if err := r.Check([]string{"example.com/dev=null0"}); err == nil {
		t.Fatal("device known before its spec")
	}
	if err := os.WriteFile(filepath.Join(dir, "example.json.tmp"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "example.yaml"), []byte(testSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor := func(known bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for (r.Check([]string{"example.com/dev=null0"}) == nil) != known {
			if time.Now().After(deadline) {
				t.Fatalf("device known=%v not seen after a spec change", known)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(true)
	if err := os.Remove(filepath.Join(dir, "example.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor(false)
}

// BenchmarkInjectDevices is what a container with one CDI device pays at create
// (the check and the edits); BenchmarkRequestedNone what every other does.
func BenchmarkInjectDevices(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "example.yaml"), []byte(testSpec), 0o644); err != nil {
		b.Fatal(err)
	}
	r, err := New([]string{dir})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		s := &specs.Spec{Process: &specs.Process{Env: []string{"PATH=/bin"}}, Linux: &specs.Linux{}}
		if err := r.InjectDevices(s, "example.com/dev=null0"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRequestedNone(b *testing.B) {
	cfg := &runtimeapi.ContainerConfig{Annotations: map[string]string{"io.kubernetes.container.hash": "1", "io.kubernetes.pod.terminationGracePeriod": "30"}}
	b.ReportAllocs()
	for b.Loop() {
		if n, err := Requested(cfg); err != nil || n != nil {
			b.Fatal(n, err)
		}
	}
}
