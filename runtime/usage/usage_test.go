package usage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/internal/heldproc"
)

// A cgroup of the test's own, holding a sleeping shell with an open socket.
func TestCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	path := fmt.Sprintf("/berth-usage-test-%s-%d", filepath.Base(t.TempDir()), os.Getpid())
	cg, err := newCgroup(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The cgroup empties once the shell's kill is reaped.
		for i := 0; i < 50; i++ {
			if err := cg.Delete(); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s left", path)
	})
	cmd := heldproc.Start(t, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 60", func(pid int) error {
		return cg.AddProc(uint64(pid))
	})
	var u *Usage
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if u, err = Cgroup(path); err != nil {
			t.Fatal(err)
		}
		if u.CPUTotal > 0 && u.MemoryUsage > 0 && u.PageFaults > 0 && readComm(cmd.Process.Pid) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU or memory usage: %+v", u)
		}
	}
	if u.CPUUser+u.CPUSystem == 0 || u.MemoryWorkingSet > u.MemoryUsage {
		t.Fatalf("CPU or memory breakdown: %+v", u)
	}
	if u.Processes != 1 || u.Threads != 1 || u.FileDescriptors < 3 {
		t.Fatalf("processes %d threads %d fds %d, want 1 1 >=3", u.Processes, u.Threads, u.FileDescriptors)
	}
	if _, err := Cgroup(path + "-none"); err == nil {
		t.Fatal("a missing cgroup has usage")
	}
}

func TestFilesystem(t *testing.T) {
	fs, err := Filesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fs.CapacityBytes == 0 {
		t.Fatalf("%+v", fs)
	}
}

func readComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// testCgroup is the part of a v1 or v2 cgroup the test uses.
type testCgroup interface {
	AddProc(pid uint64) error
	Delete() error
}

type v1Cgroup struct{ cgroup1.Cgroup }

func (c v1Cgroup) AddProc(pid uint64) error { return c.Cgroup.AddProc(pid) }

// newCgroup makes a cgroup directly below the root with the CPU, memory and
// pids controllers (through containerd's library, as berthd does).
func newCgroup(path string) (testCgroup, error) {
	if cgroupsv3.Mode() == cgroupsv3.Unified {
		return cgroup2.NewManager("/sys/fs/cgroup", path, &cgroup2.Resources{})
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), &specs.LinuxResources{})
	if err != nil {
		return nil, err
	}
	return v1Cgroup{cg}, nil
}
