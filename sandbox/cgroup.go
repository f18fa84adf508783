package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	berthcg "github.com/berth-dev/berth/runtime/cgroups"
)

// defaultCgroupParent holds pods that name no parent; it is removed when it
// becomes empty.
const defaultCgroupParent = "/berth"

// podCgroupPath is the pod's own cgroup: <parent>/berth-<id>. A systemd
// slice name as parent ("kubepods-burstable-pod1.slice") is expanded to its
// cgroupfs path.
func podCgroupPath(parent, id string) string {
	if parent == "" {
		parent = defaultCgroupParent
	}
	if strings.HasSuffix(parent, ".slice") && !strings.Contains(parent, "/") {
		parent = expandSlice(parent)
	}
	return path.Join("/", parent, "berth-"+id)
}

// expandSlice turns a-b-c.slice into /a.slice/a-b.slice/a-b-c.slice as
// systemd lays slices out.
func expandSlice(slice string) string {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "-" || name == "" {
		return "/"
	}
	var p, prefix string
	for _, part := range strings.Split(name, "-") {
		if prefix == "" {
			prefix = part
		} else {
			prefix += "-" + part
		}
		p += "/" + prefix + ".slice"
	}
	return p
}

// linuxResources sums the pod's resources and overhead into limits.
func linuxResources(r, o *Resources) *specs.LinuxResources {
	var sum Resources
	for _, x := range []*Resources{r, o} {
		if x == nil {
			continue
		}
		sum.CPUShares += x.CPUShares
		if x.CPUQuota > 0 {
			sum.CPUQuota += x.CPUQuota
			sum.CPUPeriod = max(sum.CPUPeriod, x.CPUPeriod)
		}
		if x.MemoryLimit > 0 {
			sum.MemoryLimit += x.MemoryLimit
		}
		if x.CpusetCpus != "" {
			sum.CpusetCpus = x.CpusetCpus
		}
		if x.CpusetMems != "" {
			sum.CpusetMems = x.CpusetMems
		}
	}
	// Without a pod limit, one container's overhead alone is no limit.
	if r == nil || r.MemoryLimit <= 0 {
		sum.MemoryLimit = 0
	}
	if r == nil || r.CPUQuota <= 0 {
		sum.CPUQuota, sum.CPUPeriod = 0, 0
	}
	lr := &specs.LinuxResources{}
	if sum.CPUShares > 0 || sum.CPUQuota > 0 || sum.CpusetCpus != "" || sum.CpusetMems != "" {
		lr.CPU = &specs.LinuxCPU{Cpus: sum.CpusetCpus, Mems: sum.CpusetMems}
		if sum.CPUShares > 0 {
			lr.CPU.Shares = &sum.CPUShares
		}
		if sum.CPUQuota > 0 {
			lr.CPU.Quota = &sum.CPUQuota
			if sum.CPUPeriod == 0 {
				sum.CPUPeriod = 100000
			}
			lr.CPU.Period = &sum.CPUPeriod
		}
	}
	if sum.MemoryLimit > 0 {
		lr.Memory = &specs.LinuxMemory{Limit: &sum.MemoryLimit}
	}
	return lr
}

// podCgroup is the pod's cgroup on either cgroup version.
type podCgroup interface {
	add(pid int) error
	delete() error
}

type v1Cgroup struct{ cg cgroup1.Cgroup }

func (c v1Cgroup) add(pid int) error { return c.cg.AddProc(uint64(pid)) }
func (c v1Cgroup) delete() error     { return c.cg.Delete() }

// v2Cgroup is a pod's cgroup on v2; its processes go to the leaf
// (berthcg.ShimLeaf) so that the pod's cgroup can give its containers'
// cgroups controllers.
type v2Cgroup struct {
	m    *cgroup2.Manager
	leaf string // directory
}

func (c v2Cgroup) add(pid int) error {
	if err := os.WriteFile(filepath.Join(c.leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move %d to cgroup %s: %w", pid, c.leaf, err)
	}
	return nil
}

func (c v2Cgroup) delete() error {
	if err := unix.Rmdir(c.leaf); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete cgroup %s: %w", c.leaf, err)
	}
	return c.m.Delete()
}

// v2Mount is the cgroup2 mount point; unified tells whether the node uses
// cgroup v2 (alone). Variables so that a test can drive the v2 path on the
// cgroup2 mount of a hybrid node.
var (
	v2Mount = "/sys/fs/cgroup"
	unified = func() bool { return cgroups.Mode() == cgroups.Unified }
)

// createCgroup makes the pod's cgroup with its limits. The default parent
// may vanish under us (another berthd removes it when its last pod goes):
// a few retries cover that race.
func createCgroup(p string, res *specs.LinuxResources) (cg podCgroup, err error) {
	for i := 0; i < 3; i++ {
		if cg, err = createCgroupOnce(p, res); err == nil || !errors.Is(err, os.ErrNotExist) {
			return cg, err
		}
	}
	return cg, err
}

func createCgroupOnce(p string, res *specs.LinuxResources) (podCgroup, error) {
	if unified() {
		m, err := cgroup2.NewManager(v2Mount, p, cgroup2.ToResources(res))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", p, err)
		}
		cg := v2Cgroup{m: m, leaf: filepath.Join(v2Mount, p, berthcg.ShimLeaf)}
		if err := os.Mkdir(cg.leaf, 0o755); err != nil && !os.IsExist(err) {
			_ = cg.delete()
			return nil, fmt.Errorf("create cgroup %s: %w", cg.leaf, err)
		}
		// Only on the node's own hierarchy: a test on a hybrid node's
		// cgroup2 mount must not change what its root delegates.
		if v2Mount == berthcg.Root {
			if err := berthcg.EnableControllers(p); err != nil {
				_ = cg.delete()
				return nil, fmt.Errorf("create cgroup %s: %w", p, err)
			}
		}
		return cg, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(p), res)
	if err != nil {
		// New leaves what it made of the hierarchies it got through.
		if c, lerr := cgroup1.Load(cgroup1.StaticPath(p)); lerr == nil {
			_ = c.Delete()
		}
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	return v1Cgroup{cg}, nil
}

// deleteCgroup removes the pod's cgroup (it must hold no process); a
// missing one is fine. The default parent goes too once empty.
func deleteCgroup(p string) error {
	// A process that just exited stays in the cgroup until its parent reaps
	// it: retry for a while.
	deadline := time.Now().Add(5 * time.Second)
	for d := 2 * time.Millisecond; ; d = min(2*d, 100*time.Millisecond) {
		err := deleteOne(p)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(d)
	}
	if path.Dir(p) == defaultCgroupParent {
		// rmdir fails (harmlessly) while other pods, of any berthd, use it.
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + defaultCgroupParent)
		if unified() {
			dirs = []string{v2Mount + defaultCgroupParent}
		}
		for _, d := range dirs {
			_ = unix.Rmdir(d)
		}
	}
	return nil
}

func deleteOne(p string) error {
	if unified() {
		if _, err := os.Stat(filepath.Join(v2Mount, p)); os.IsNotExist(err) {
			return nil
		}
		m, err := cgroup2.Load(p, cgroup2.WithMountpoint(v2Mount))
		if err != nil {
			return fmt.Errorf("load cgroup %s: %w", p, err)
		}
		if err := (v2Cgroup{m: m, leaf: filepath.Join(v2Mount, p, berthcg.ShimLeaf)}).delete(); err != nil {
			return fmt.Errorf("delete cgroup %s: %w", p, err)
		}
		return nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load cgroup %s: %w", p, err)
	}
	if err := cg.Delete(); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", p, err)
	}
	return nil
}

// cgroupfsDriver is the cgroupfs driver (runtime/cgroups.Manager) made of
// the functions above; the systemd one comes from runtime/cgroups.
type cgroupfsDriver struct{}

func (cgroupfsDriver) Driver() string { return "cgroupfs" }

func (cgroupfsDriver) PodCgroup(parent, id string) (string, error) {
	if err := berthcg.CheckParent(parent); err != nil {
		return "", err
	}
	return podCgroupPath(parent, id), nil
}

func (cgroupfsDriver) CreatePod(p string, res *specs.LinuxResources) (func(int) error, error) {
	cg, err := createCgroup(p, res)
	if err != nil {
		return nil, err
	}
	return cg.add, nil
}

func (cgroupfsDriver) DeletePod(p string) error { return deleteCgroup(p) }

func (cgroupfsDriver) UpdatePod(p string, res *specs.LinuxResources) error {
	return updateCgroup(p, res)
}

// updateCgroup writes new limits to the pod's cgroup, converted as
// createCgroupOnce converts them. A missing cgroup is an error wrapping
// os.ErrNotExist.
func updateCgroup(p string, res *specs.LinuxResources) error {
	if unified() {
		if _, err := os.Stat(filepath.Join(v2Mount, p)); err != nil {
			return fmt.Errorf("update cgroup %s: %w", p, err)
		}
		m, err := cgroup2.Load(p, cgroup2.WithMountpoint(v2Mount))
		if err != nil {
			return fmt.Errorf("load cgroup %s: %w", p, err)
		}
		if err := m.Update(cgroup2.ToResources(res)); err != nil {
			return fmt.Errorf("update cgroup %s: %w", p, err)
		}
		return nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return fmt.Errorf("update cgroup %s: %w", p, os.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("load cgroup %s: %w", p, err)
	}
	if err := cg.Update(res); err != nil {
		return fmt.Errorf("update cgroup %s: %w", p, err)
	}
	return nil
}
