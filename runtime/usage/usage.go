// Package usage reads the detailed usage of a cgroup and its processes, as
// cAdvisor reports it (the kubelet's /metrics/cadvisor names, served through
// the CRI's ListPodSandboxMetrics): CPU split and throttling, the memory
// breakdown, block I/O, processes, threads, descriptors and sockets, and
// the use of a writable layer's filesystem. It reads cgroup v1 and v2.
package usage

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/cgroupfs"
)

// IO is one device's block I/O.
type IO struct {
	Device                               string // "major:minor"
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// Usage is a cgroup's usage at one moment; CPU times are nanoseconds.
type Usage struct {
	Time time.Time

	CPUTotal, CPUUser, CPUSystem                       uint64
	CFSPeriods, CFSThrottledPeriods, CFSThrottledNanos uint64

	MemoryUsage, MemoryMaxUsage, MemoryWorkingSet, MemoryCache, MemoryRSS uint64
	MemoryMappedFile, MemorySwap, MemoryKernel, MemoryFailcnt             uint64
	PageFaults, MajorPageFaults, OOMEvents                                uint64

	IO []IO

	// Processes, Threads, FileDescriptors and Sockets count what the
	// cgroup's processes hold; ThreadsMax is its pids limit (0: none).
	Processes, Threads, FileDescriptors, Sockets, ThreadsMax uint64
	// Pids are the processes of the cgroup and its descendants.
	Pids []int
}

// Cgroup reads the usage of the cgroup at path (below the hierarchy root).
func Cgroup(path string) (*Usage, error) {
	u := &Usage{Time: time.Now()}
	if cgroupsv3.Mode() == cgroupsv3.Unified {
		if err := u.readV2(path); err != nil {
			return nil, err
		}
	} else if err := u.readV1(path); err != nil {
		return nil, err
	}
	if g, err := cgroupfs.Open(path); err == nil {
		if pids, err := g.Pids(); err == nil {
			u.Pids = pids
			u.countProcesses(pids)
		}
	}
	return u, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func (u *Usage) readV2(path string) error {
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", path)); err != nil {
		return fmt.Errorf("load cgroup %s: %w", path, err)
	}
	cg, err := cgroup2.Load(path, cgroup2.WithMountpoint("/sys/fs/cgroup"))
	if err != nil {
		return fmt.Errorf("load cgroup %s: %w", path, err)
	}
	m, err := cg.Stat()
	if err != nil {
		return fmt.Errorf("stats of cgroup %s: %w", path, err)
	}
	if c := m.CPU; c != nil {
		u.CPUTotal, u.CPUUser, u.CPUSystem = c.UsageUsec*1000, c.UserUsec*1000, c.SystemUsec*1000
		u.CFSPeriods, u.CFSThrottledPeriods, u.CFSThrottledNanos = c.NrPeriods, c.NrThrottled, c.ThrottledUsec*1000
	}
	if mem := m.Memory; mem != nil {
		u.MemoryUsage, u.MemoryMaxUsage, u.MemorySwap = mem.Usage, mem.MaxUsage, mem.SwapUsage
		u.MemoryCache, u.MemoryRSS, u.MemoryMappedFile = mem.File, mem.Anon, mem.FileMapped
		u.MemoryKernel = mem.KernelStack + mem.Slab
		u.PageFaults, u.MajorPageFaults = mem.Pgfault, mem.Pgmajfault
		u.MemoryWorkingSet = sub(mem.Usage, mem.InactiveFile)
	}
	if ev := m.MemoryEvents; ev != nil {
		u.MemoryFailcnt, u.OOMEvents = ev.Max, ev.OomKill
	}
	if p := m.Pids; p != nil {
		u.ThreadsMax = p.Limit
	}
	if m.Io != nil {
		for _, e := range m.Io.Usage {
			u.IO = append(u.IO, IO{Device: fmt.Sprintf("%d:%d", e.Major, e.Minor), ReadBytes: e.Rbytes, WriteBytes: e.Wbytes, Reads: e.Rios, Writes: e.Wios})
		}
	}
	return nil
}

// countProcesses adds up the threads, descriptors and sockets of pids;
// a process that ends meanwhile is left out.
func (u *Usage) countProcesses(pids []int) {
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid))
		status, err := cgroupfs.ReadFile(filepath.Join(dir, "status"))
		if err != nil {
			continue
		}
		u.Processes++
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "Threads:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				u.Threads += n
			}
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			u.FileDescriptors++
			if t, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && strings.HasPrefix(t, "socket:") {
				u.Sockets++
			}
		}
	}
}

// FS is the filesystem holding a writable layer.
type FS struct {
	CapacityBytes, InodesTotal, InodesFree uint64
}

// Filesystem reads the size and free inodes of the filesystem of dir.
func Filesystem(dir string) (*FS, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return &FS{CapacityBytes: st.Blocks * uint64(st.Bsize), InodesTotal: st.Files, InodesFree: st.Ffree}, nil
}
