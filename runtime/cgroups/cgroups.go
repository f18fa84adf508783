// Package cgroups manages a container's cgroup with the cgroupfs driver on
// cgroup v1 and v2 hosts: create it below the pod's with the spec's
// resources, update, read statistics and OOM kills, kill everything in it
// and remove it.
package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Root is where the cgroup hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// Unified reports whether the host runs cgroup v2 only.
func Unified() bool { return cgroupsv3.Mode() == cgroupsv3.Unified }

// Cgroup is one container's (or pod's) cgroup, by its path below the
// hierarchy root ("/berth/pod-x/ctr-y").
type Cgroup struct {
	path string
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
}

// Stats is what the CRI reports of a container's usage.
type Stats struct {
	Time             time.Time
	CPUUsageNanos    uint64 // cumulative
	MemoryUsage      uint64
	MemoryWorkingSet uint64 // usage less inactive file pages, as the kubelet computes it
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	OOMKills         uint64
}

func checkPath(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return fmt.Errorf("cgroup path %q must be absolute, clean and not the root", path)
	}
	return nil
}

// Create makes the cgroup (and its missing parents) and applies resources.
func Create(path string, resources *specs.LinuxResources) (*Cgroup, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if resources == nil {
		resources = &specs.LinuxResources{}
	}
	if Unified() {
		m, err := cgroup2.NewManager(Root, path, cgroup2.ToResources(resources))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		return &Cgroup{path: path, v2: m}, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), resources)
	if err != nil {
		// New leaves the subsystems it already made behind.
		if l, lerr := cgroup1.Load(cgroup1.StaticPath(path)); lerr == nil {
			_ = l.Delete()
		}
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return &Cgroup{path: path, v1: cg}, nil
}

// Load opens an existing cgroup.
func Load(path string) (*Cgroup, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if Unified() {
		m, err := cgroup2.Load(path, cgroup2.WithMountpoint(Root))
		if err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", path, err)
		}
		if _, err := os.Stat(filepath.Join(Root, path)); err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", path, err)
		}
		return &Cgroup{path: path, v2: m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("load cgroup %s: %w", path, os.ErrNotExist)
		}
		return nil, fmt.Errorf("load cgroup %s: %w", path, err)
	}
	return &Cgroup{path: path, v1: cg}, nil
}

// Path is the cgroup's path below the hierarchy root.
func (c *Cgroup) Path() string { return c.path }

// AddProc moves a process (all its threads) into the cgroup.
func (c *Cgroup) AddProc(pid int) error {
	var err error
	if c.v2 != nil {
		err = c.v2.AddProc(uint64(pid))
	} else {
		err = c.v1.AddProc(uint64(pid))
	}
	if err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

// Update changes the limits of a live cgroup.
func (c *Cgroup) Update(resources *specs.LinuxResources) error {
	var err error
	if c.v2 != nil {
		err = c.v2.Update(cgroup2.ToResources(resources))
	} else {
		err = c.v1.Update(resources)
	}
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	return nil
}

// Pids lists the processes in the cgroup and its children.
func (c *Cgroup) Pids() ([]int, error) {
	var pids []int
	if c.v2 != nil {
		ps, err := c.v2.Procs(true)
		if err != nil {
			return nil, fmt.Errorf("list processes of cgroup %s: %w", c.path, err)
		}
		for _, p := range ps {
			pids = append(pids, int(p))
		}
		return pids, nil
	}
	// The pids controller is always there on the hosts we support; the
	// first active one would do as well.
	ps, err := c.v1.Processes(c.v1Subsystem(), true)
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", c.path, err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if !seen[p.Pid] {
			seen[p.Pid] = true
			pids = append(pids, p.Pid)
		}
	}
	return pids, nil
}

func (c *Cgroup) v1Subsystem() cgroup1.Name {
	names := map[cgroup1.Name]bool{}
	for _, s := range c.v1.Subsystems() {
		names[s.Name()] = true
	}
	for _, n := range []cgroup1.Name{cgroup1.Pids, cgroup1.Freezer, cgroup1.Memory, cgroup1.Cpu} {
		if names[n] {
			return n
		}
	}
	return c.v1.Subsystems()[0].Name()
}

// KillAll sends SIGKILL to every process in the cgroup. On v1 the cgroup is
// frozen meanwhile so that no process forks past the kill.
func (c *Cgroup) KillAll() error {
	if c.v2 != nil {
		if err := os.WriteFile(filepath.Join(Root, c.path, "cgroup.kill"), []byte("1"), 0); err == nil {
			return nil
		}
	}
	frozen := c.freeze() == nil
	pids, err := c.Pids()
	if err == nil {
		for _, pid := range pids {
			if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr != nil && kerr != syscall.ESRCH {
				err = fmt.Errorf("kill %d: %w", pid, kerr)
			}
		}
	}
	if frozen {
		if terr := c.thaw(); terr != nil && err == nil {
			err = terr
		}
	}
	if err != nil {
		return fmt.Errorf("kill processes of cgroup %s: %w", c.path, err)
	}
	return nil
}

func (c *Cgroup) freeze() error {
	if c.v2 != nil {
		return c.v2.Freeze()
	}
	return c.v1.Freeze()
}

func (c *Cgroup) thaw() error {
	if c.v2 != nil {
		return c.v2.Thaw()
	}
	return c.v1.Thaw()
}

// OOMKills is how many processes the kernel's OOM killer killed in the
// cgroup. Read it before Delete: the counter goes with the cgroup.
func (c *Cgroup) OOMKills() (uint64, error) {
	var file, key string
	if c.v2 != nil {
		file, key = filepath.Join(Root, c.path, "memory.events"), "oom_kill"
	} else {
		file, key = filepath.Join(Root, "memory", c.path, "memory.oom_control"), "oom_kill"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("read OOM kills of cgroup %s: %w", c.path, err)
	}
	v, _ := flatKeyed(data)[key]
	return v, nil
}

func flatKeyed(data []byte) map[string]uint64 {
	out := map[string]uint64{}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// Stats reads CPU and memory usage.
func (c *Cgroup) Stats() (*Stats, error) {
	st := &Stats{Time: time.Now()}
	if c.v2 != nil {
		m, err := c.v2.Stat()
		if err != nil {
			return nil, fmt.Errorf("stats of cgroup %s: %w", c.path, err)
		}
		if m.CPU != nil {
			st.CPUUsageNanos = m.CPU.UsageUsec * 1000
		}
		if m.Memory != nil {
			st.MemoryUsage = m.Memory.Usage
			st.MemoryRSS = m.Memory.Anon
			st.PageFaults = m.Memory.Pgfault
			st.MajorPageFaults = m.Memory.Pgmajfault
			st.MemoryWorkingSet = workingSet(m.Memory.Usage, m.Memory.InactiveFile)
		}
		if m.MemoryEvents != nil {
			st.OOMKills = m.MemoryEvents.OomKill
		}
		return st, nil
	}
	m, err := c.v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", c.path, err)
	}
	if m.CPU != nil && m.CPU.Usage != nil {
		st.CPUUsageNanos = m.CPU.Usage.Total
	}
	if m.Memory != nil {
		if m.Memory.Usage != nil {
			st.MemoryUsage = m.Memory.Usage.Usage
		}
		st.MemoryRSS = m.Memory.TotalRSS
		st.PageFaults = m.Memory.TotalPgFault
		st.MajorPageFaults = m.Memory.TotalPgMajFault
		st.MemoryWorkingSet = workingSet(st.MemoryUsage, m.Memory.TotalInactiveFile)
	}
	if n, err := c.OOMKills(); err == nil {
		st.OOMKills = n
	}
	return st, nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

// Delete removes the cgroup; it must hold no process. A cgroup already gone
// is no error.
func (c *Cgroup) Delete() error {
	var err error
	if c.v2 != nil {
		err = c.v2.Delete()
	} else {
		err = c.v1.Delete()
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete cgroup %s: %w", c.path, err)
	}
	return nil
}
