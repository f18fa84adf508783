package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
)

// TestCgroupfsUpdatePod resizes a pod cgroup of the cgroupfs driver on the
// node's cgroup version (v1 here, v2 in hack/vm's guests) and reads the
// limits back from the kernel's files.
func TestCgroupfsUpdatePod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	parent := "/berth-unit-resize-" + strconv.Itoa(os.Getpid())
	p := podCgroupPath(parent, "pod1")
	t.Cleanup(func() {
		_ = deleteCgroup(p)
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
		dirs = append(dirs, v2Mount+parent)
		for _, d := range dirs {
			_ = unix.Rmdir(d)
		}
	})
	d := cgroupfsDriver{}
	if _, err := d.CreatePod(p, linuxResources(&Resources{CPUShares: 256, CPUQuota: 20000, CPUPeriod: 100000, MemoryLimit: 64 << 20}, nil)); err != nil {
		t.Fatal(err)
	}
	// Grown, with an overhead added on top as at RunPodSandbox.
	res := linuxResources(&Resources{CPUShares: 1024, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 128 << 20}, &Resources{CPUShares: 24, MemoryLimit: 16 << 20})
	if err := d.UpdatePod(p, res); err != nil {
		t.Fatal(err)
	}
	read := func(ctrl, file string) string {
		t.Helper()
		dir := filepath.Join("/sys/fs/cgroup", ctrl, p)
		if unified() {
			dir = filepath.Join(v2Mount, p)
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		return strings.TrimSpace(string(b))
	}
	want := map[[2]string]string{
		{"cpu", "cpu.shares"}:               "1048",
		{"cpu", "cpu.cfs_quota_us"}:         "50000",
		{"cpu", "cpu.cfs_period_us"}:        "100000",
		{"memory", "memory.limit_in_bytes"}: strconv.Itoa(144 << 20),
	}
	if unified() {
		want = map[[2]string]string{
			{"", "cpu.max"}:    "50000 100000",
			{"", "memory.max"}: strconv.Itoa(144 << 20),
		}
	}
	for k, v := range want {
		if got := read(k[0], k[1]); got != v {
			t.Errorf("%s = %q after the resize, want %q", k[1], got, v)
		}
	}
	if err := d.UpdatePod(podCgroupPath(parent, "gone"), res); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("resizing a missing pod cgroup: %v, want ErrNotExist", err)
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + podCgroupPath(parent, "gone")); len(dirs) != 0 {
		t.Errorf("resizing a missing pod cgroup made %v", dirs)
	}
}

// fakeDriver records the limits each UpdatePod got, and refuses those with
// a memory limit of refuse bytes.
type fakeDriver struct {
	cgroupfsDriver
	got    []int64 // memory limits, in call order
	refuse int64
}

func (f *fakeDriver) UpdatePod(p string, res *specs.LinuxResources) error {
	var mem int64
	if res.Memory != nil && res.Memory.Limit != nil {
		mem = *res.Memory.Limit
	}
	f.got = append(f.got, mem)
	if mem == f.refuse {
		return fmt.Errorf("write memory.limit_in_bytes: %w", unix.EBUSY)
	}
	return nil
}

// UpdateResources records what it applied, puts the old limits back when
// the kernel refuses the new ones, and refuses a pod that is not ready.
func TestUpdateResources(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	drv := &fakeDriver{refuse: 512 << 20}
	m := &Manager{opts: Options{Cgroups: drv}, store: store{db}, pods: map[string]*Sandbox{}, podLocks: map[string]*sync.Mutex{}}
	if err := m.store.init(); err != nil {
		t.Fatal(err)
	}
	sb := &Sandbox{ID: "pod1", State: StateReady, Cgroup: "/berth/berth-pod1", Config: Config{
		Resources: &Resources{MemoryLimit: 64 << 20}, Overhead: &Resources{MemoryLimit: 8 << 20},
	}}
	m.pods[sb.ID] = sb
	ctx := context.Background()

	if err := m.UpdateResources(ctx, "pod1", &Resources{MemoryLimit: 128 << 20}, nil); err != nil {
		t.Fatal(err)
	}
	if want := []int64{136 << 20}; !slices.Equal(drv.got, want) {
		t.Errorf("applied %v, want %v (the overhead kept)", drv.got, want)
	}
	recs, _ := m.store.all()
	if len(recs) != 1 || recs[0].Config.Resources.MemoryLimit != 128<<20 || recs[0].Config.Overhead.MemoryLimit != 8<<20 {
		t.Errorf("recorded %+v", recs[0].Config)
	}

	drv.got = nil
	err = m.UpdateResources(ctx, "pod1", &Resources{MemoryLimit: 504 << 20}, nil)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("refused by the kernel: %v, want FailedPrecondition", err)
	}
	if want := []int64{512 << 20, 136 << 20}; !slices.Equal(drv.got, want) {
		t.Errorf("applied %v, want %v (the old limits back)", drv.got, want)
	}
	if got, _ := m.Get("pod1"); got.Config.Resources.MemoryLimit != 128<<20 {
		t.Errorf("a refused resize changed the record: %+v", got.Config.Resources)
	}

	if err := m.UpdateResources(ctx, "nopod", &Resources{}, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown pod: %v", err)
	}
	sb.State = StateNotReady
	drv.got = nil
	if err := m.UpdateResources(ctx, "pod1", &Resources{MemoryLimit: 256 << 20}, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) || len(drv.got) != 0 {
		t.Errorf("stopped pod: %v, driver called with %v", err, drv.got)
	}
}
