package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/runtime/cgroupfs"
)

// Usage reads the same figures as Stats, but OOMKills (which the CRI's
// stats do not carry: one file fewer a cgroup), from the few files they
// come from.
// Stats goes through containerd's library, which on every call reads
// /proc/self/mountinfo, looks up each of a dozen controllers and reads
// every statistics file of each (blkio, hugetlb, per-CPU usage ...): tens of
// file reads and goroutines a container, which a stats list pays for every
// container on the node. An error wrapping fs.ErrNotExist means the cgroup
// is gone.
func Usage(path string) (*Stats, error) {
	g, err := cgroupfs.Open(path)
	if err != nil {
		return nil, err
	}
	st := &Stats{Time: time.Now()}
	if g.Unified() {
		err = usageV2(g.Dir(""), st)
	} else {
		err = usageV1(g, st)
	}
	if err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", path, err)
	}
	return st, nil
}

func usageV2(dir string, st *Stats) error {
	cpu, err := readKeyed(filepath.Join(dir, "cpu.stat"), "usage_usec")
	if err != nil {
		return err
	}
	st.CPUUsageNanos = cpu[0] * 1000
	// The memory files are missing without the memory controller:
	// zeros then, as containerd's library reports.
	if mem, err := readKeyed(filepath.Join(dir, "memory.stat"), "anon", "pgfault", "pgmajfault", "inactive_file"); err == nil {
		st.MemoryUsage, _ = readUint(filepath.Join(dir, "memory.current"))
		st.MemoryRSS, st.PageFaults, st.MajorPageFaults = mem[0], mem[1], mem[2]
		st.MemoryWorkingSet = workingSet(st.MemoryUsage, mem[3])
	} else if !os.IsNotExist(err) {
		return err
	}
	return nil
}

func usageV1(g *cgroupfs.Group, st *Stats) error {
	cpuDir, memDir := g.Dir("cpuacct"), g.Dir("memory")
	found := false
	if cpuDir != "" {
		n, err := readUint(filepath.Join(cpuDir, "cpuacct.usage"))
		switch {
		case err == nil:
			st.CPUUsageNanos, found = n, true
		case !os.IsNotExist(err):
			return err
		}
	}
	if memDir != "" {
		mem, err := readKeyed(filepath.Join(memDir, "memory.stat"), "total_rss", "total_pgfault", "total_pgmajfault", "total_inactive_file")
		switch {
		case err == nil:
			found = true
			if st.MemoryUsage, err = readUint(filepath.Join(memDir, "memory.usage_in_bytes")); err != nil && !os.IsNotExist(err) {
				return err
			}
			st.MemoryRSS, st.PageFaults, st.MajorPageFaults = mem[0], mem[1], mem[2]
			st.MemoryWorkingSet = workingSet(st.MemoryUsage, mem[3])
		case !os.IsNotExist(err):
			return err
		}
	}
	if !found {
		return os.ErrNotExist
	}
	return nil
}

func readKeyed(file string, keys ...string) ([]uint64, error) {
	data, err := cgroupfs.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return cgroupfs.Keyed(data, keys...), nil
}

func readUint(file string) (uint64, error) {
	data, err := cgroupfs.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v := strings.TrimSpace(string(data))
	if v == "max" {
		return 0, nil
	}
	return strconv.ParseUint(v, 10, 64)
}
