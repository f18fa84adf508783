package usage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/runtime/cgroupfs"
)

// readV1 reads the few cgroup v1 files the metrics come from, with the
// meaning containerd's cgroup1 Stat gives them. That Stat, on every call,
// parsed /proc/self/mountinfo, read every file of every controller (the
// memsw, kmem and kmem.tcp quadruples, per-CPU usage, a dozen blkio files)
// and walked /dev to name block devices: 2.5 ms a cgroup, which a metrics
// list paid for every pod and every container.
func (u *Usage) readV1(path string) error {
	g, err := cgroupfs.Open(path)
	if err != nil {
		return fmt.Errorf("load cgroup %s: %w", path, err)
	}
	found := false
	// read reads a file of controller's dir; a missing file or controller
	// reads as nothing (containerd's IgnoreNotExist).
	read := func(controller, file string) ([]byte, bool, error) {
		d := g.Dir(controller)
		if d == "" {
			return nil, false, nil
		}
		b, err := cgroupfs.ReadFile(filepath.Join(d, file))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("stats of cgroup %s: %w", path, err)
		}
		found = true
		return b, true, nil
	}
	num := func(controller, file string) (uint64, error) {
		b, ok, err := read(controller, file)
		if !ok || err != nil {
			return 0, err
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stats of cgroup %s: %s: %w", path, file, err)
		}
		return n, nil
	}
	keyed := func(controller, file string, keys ...string) ([]uint64, error) {
		b, _, err := read(controller, file)
		return cgroupfs.Keyed(b, keys...), err
	}

	if u.CPUTotal, err = num("cpuacct", "cpuacct.usage"); err != nil {
		return err
	}
	// User and system time are in clock ticks (USER_HZ, 100 on Linux).
	cs, err := keyed("cpuacct", "cpuacct.stat", "user", "system")
	if err != nil {
		return err
	}
	u.CPUUser, u.CPUSystem = cs[0]*1e9/100, cs[1]*1e9/100
	cpu, err := keyed("cpu", "cpu.stat", "nr_periods", "nr_throttled", "throttled_time")
	if err != nil {
		return err
	}
	u.CFSPeriods, u.CFSThrottledPeriods, u.CFSThrottledNanos = cpu[0], cpu[1], cpu[2]

	var swap uint64
	for _, f := range []struct {
		file string
		v    *uint64
	}{
		{"memory.usage_in_bytes", &u.MemoryUsage}, {"memory.max_usage_in_bytes", &u.MemoryMaxUsage},
		{"memory.failcnt", &u.MemoryFailcnt}, {"memory.memsw.usage_in_bytes", &swap},
		{"memory.kmem.usage_in_bytes", &u.MemoryKernel},
	} {
		if *f.v, err = num("memory", f.file); err != nil {
			return err
		}
	}
	// memsw counts memory and swap together.
	u.MemorySwap = sub(swap, u.MemoryUsage)
	mem, err := keyed("memory", "memory.stat", "total_cache", "total_rss", "total_mapped_file", "total_pgfault", "total_pgmajfault", "total_inactive_file")
	if err != nil {
		return err
	}
	u.MemoryCache, u.MemoryRSS, u.MemoryMappedFile = mem[0], mem[1], mem[2]
	u.PageFaults, u.MajorPageFaults = mem[3], mem[4]
	u.MemoryWorkingSet = sub(u.MemoryUsage, mem[5])

	if u.ThreadsMax, err = num("pids", "pids.max"); err != nil {
		return err
	}
	if err := u.readBlkioV1(read); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("load cgroup %s: %w", path, os.ErrNotExist)
	}
	if n, err := g.OOMKills(); err == nil {
		u.OOMEvents = n
	}
	return nil
}

// readBlkioV1 reads the CFQ scheduler's recursive counters, or the
// throttle ones when those list no device (a kernel without CFQ, or
// devices on another scheduler), as containerd does.
func (u *Usage) readBlkioV1(read func(controller, file string) ([]byte, bool, error)) error {
	var byDev map[string]*IO
	var order []string
	parse := func(file string, bytes bool) error {
		b, _, err := read("blkio", file)
		if err != nil {
			return err
		}
		for _, l := range splitLines(b) {
			f := strings.Fields(l)
			if len(f) != 3 { // "Total n"
				continue
			}
			v, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				continue
			}
			io := byDev[f[0]]
			if io == nil {
				io = &IO{Device: f[0]}
				byDev[f[0]] = io
				order = append(order, f[0])
			}
			switch op := strings.ToLower(f[1]); {
			case op == "read" && bytes:
				io.ReadBytes += v
			case op == "write" && bytes:
				io.WriteBytes += v
			case op == "read":
				io.Reads += v
			case op == "write":
				io.Writes += v
			}
		}
		return nil
	}
	for _, files := range [][2]string{
		{"blkio.io_service_bytes_recursive", "blkio.io_serviced_recursive"},
		{"blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"},
	} {
		byDev, order = map[string]*IO{}, nil
		if err := parse(files[0], true); err != nil {
			return err
		}
		if err := parse(files[1], false); err != nil {
			return err
		}
		if len(order) > 0 {
			break
		}
	}
	for _, d := range order {
		u.IO = append(u.IO, *byDev[d])
	}
	return nil
}

func splitLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
