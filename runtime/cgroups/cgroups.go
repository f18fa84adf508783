// Package cgroups manages a container's (or pod's) cgroup with the
// cgroupfs driver on cgroup v1 and v2 hosts, through containerd's cgroups
// library: create it below the pod's with the spec's resources, update it,
// read its statistics, remove it. It is berthd's side; moving processes in,
// killing them and counting OOM kills is runtime/cgroupfs, which the shim
// uses without this package's dependencies.
package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/cgroupfs"
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
		// All the controllers, not only those of the limits: the
		// statistics files need them too.
		if err := EnableControllers(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		m, err := cgroup2.NewManager(Root, path, v2Resources(Root, path, resources))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		if err := v2Unified(Root, path, resources.Unified); err != nil {
			_ = m.Delete()
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

// Update changes the limits of a live cgroup.
func (c *Cgroup) Update(resources *specs.LinuxResources) error {
	var err error
	if c.v2 != nil {
		if err = c.v2.Update(v2Resources(Root, c.path, resources)); err == nil {
			err = v2Unified(Root, c.path, resources.Unified)
		}
	} else {
		err = c.v1.Update(resources)
	}
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	return nil
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
	if g, err := cgroupfs.Open(c.path); err == nil {
		if n, err := g.OOMKills(); err == nil {
			st.OOMKills = n
		}
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

// FS is the same cgroup for process operations (join, list, kill all, OOM
// kills, remove), as the shim does them.
func (c *Cgroup) FS() (*cgroupfs.Group, error) { return cgroupfs.Open(c.path) }

// AddProc moves a process into the cgroup.
func (c *Cgroup) AddProc(pid int) error {
	g, err := c.FS()
	if err != nil {
		return err
	}
	return g.AddProc(pid)
}

// Pids lists the processes in the cgroup and below it.
func (c *Cgroup) Pids() ([]int, error) {
	g, err := c.FS()
	if err != nil {
		return nil, err
	}
	return g.Pids()
}

// KillAll sends SIGKILL to every process in the cgroup.
func (c *Cgroup) KillAll() error {
	g, err := c.FS()
	if err != nil {
		return err
	}
	return g.KillAll()
}

// OOMKills is how many processes the OOM killer killed in the cgroup.
func (c *Cgroup) OOMKills() (uint64, error) {
	g, err := c.FS()
	if err != nil {
		return 0, err
	}
	return g.OOMKills()
}
