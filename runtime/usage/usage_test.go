package usage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/cgroupfs"
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
	if cgroupsv3.Mode() != cgroupsv3.Unified {
		// The direct reads give what containerd's library gives (the
		// sleeping shell's figures settle; retried while they move).
		for i := 0; ; i++ {
			var got, want Usage
			if err := got.readV1(path); err != nil {
				t.Fatal(err)
			}
			if err := want.readV1Containerd(path); err != nil {
				t.Fatal(err)
			}
			for _, u := range []*Usage{&got, &want} {
				sort.Slice(u.IO, func(i, j int) bool { return u.IO[i].Device < u.IO[j].Device })
			}
			if reflect.DeepEqual(got, want) {
				break
			}
			if i == 20 {
				t.Fatalf("direct v1 reads\n%+v\ncontainerd's\n%+v", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
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

// readV1Containerd is how the v1 usage was read through containerd's
// library: readV1 must read the same.
func (u *Usage) readV1Containerd(path string) error {
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			err = os.ErrNotExist
		}
		return fmt.Errorf("load cgroup %s: %w", path, err)
	}
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return fmt.Errorf("stats of cgroup %s: %w", path, err)
	}
	if c := m.CPU; c != nil {
		if c.Usage != nil {
			u.CPUTotal, u.CPUUser, u.CPUSystem = c.Usage.Total, c.Usage.User, c.Usage.Kernel
		}
		if t := c.Throttling; t != nil {
			u.CFSPeriods, u.CFSThrottledPeriods, u.CFSThrottledNanos = t.Periods, t.ThrottledPeriods, t.ThrottledTime
		}
	}
	if mem := m.Memory; mem != nil {
		if mem.Usage != nil {
			u.MemoryUsage, u.MemoryMaxUsage, u.MemoryFailcnt = mem.Usage.Usage, mem.Usage.Max, mem.Usage.Failcnt
		}
		if mem.Swap != nil {
			// memsw counts memory and swap together.
			u.MemorySwap = sub(mem.Swap.Usage, u.MemoryUsage)
		}
		if mem.Kernel != nil {
			u.MemoryKernel = mem.Kernel.Usage
		}
		u.MemoryCache, u.MemoryRSS, u.MemoryMappedFile = mem.TotalCache, mem.TotalRSS, mem.TotalMappedFile
		u.PageFaults, u.MajorPageFaults = mem.TotalPgFault, mem.TotalPgMajFault
		u.MemoryWorkingSet = sub(u.MemoryUsage, mem.TotalInactiveFile)
	}
	if p := m.Pids; p != nil {
		u.ThreadsMax = p.Limit
	}
	if b := m.Blkio; b != nil {
		io := map[string]*IO{}
		dev := func(major, minor uint64) *IO {
			k := fmt.Sprintf("%d:%d", major, minor)
			if io[k] == nil {
				io[k] = &IO{Device: k}
			}
			return io[k]
		}
		for _, e := range b.IoServiceBytesRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				dev(e.Major, e.Minor).ReadBytes += e.Value
			case "write":
				dev(e.Major, e.Minor).WriteBytes += e.Value
			}
		}
		for _, e := range b.IoServicedRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				dev(e.Major, e.Minor).Reads += e.Value
			case "write":
				dev(e.Major, e.Minor).Writes += e.Value
			}
		}
		for _, v := range io {
			u.IO = append(u.IO, *v)
		}
	}
	if g, err := cgroupfs.Open(path); err == nil {
		if n, err := g.OOMKills(); err == nil {
			u.OOMEvents = n
		}
	}
	return nil
}

func TestReadBlkioV1(t *testing.T) {
	files := map[string]string{
		// CFQ files that list no device: the throttle ones count.
		"blkio.io_service_bytes_recursive": "Total 0\n",
		"blkio.io_serviced_recursive":      "Total 0\n",
		"blkio.throttle.io_service_bytes":  "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\n253:1 Read 10\nTotal 12298\n",
		"blkio.throttle.io_serviced":       "8:0 Read 2\n8:0 Write 3\n253:1 Read 1\nTotal 6\n",
	}
	read := func(_, f string) ([]byte, bool, error) {
		b, ok := files[f]
		return []byte(b), ok, nil
	}
	var u Usage
	if err := u.readBlkioV1(read); err != nil {
		t.Fatal(err)
	}
	want := []IO{{Device: "8:0", ReadBytes: 4096, WriteBytes: 8192, Reads: 2, Writes: 3}, {Device: "253:1", ReadBytes: 10, Reads: 1}}
	if !reflect.DeepEqual(u.IO, want) {
		t.Fatalf("got %+v, want %+v", u.IO, want)
	}
	files["blkio.io_serviced_recursive"] = "8:16 Read 7\nTotal 7\n"
	u = Usage{}
	if err := u.readBlkioV1(read); err != nil {
		t.Fatal(err)
	}
	if want := []IO{{Device: "8:16", Reads: 7}}; !reflect.DeepEqual(u.IO, want) {
		t.Fatalf("CFQ: got %+v, want %+v", u.IO, want)
	}
}
