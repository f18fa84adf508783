package spec

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// MinMemoryLimit is the smallest memory limit a container may ask for: a
// smaller one kills berth's init (a Go program) before the user's command
// runs, which would surface as an unexplained failure at create. Measured
// on cgroup v1, the init starts busybox in 2 MiB; cgroup v2 also charges
// kernel memory, so the floor is Docker's (6 MiB, set after runc's init
// grew to need it). CRI-O refuses below 12 MiB.
const MinMemoryLimit = 6 << 20

// Node is what this node can give a container, read from sysfs. A nil set
// is one that could not be read, and is not checked.
type Node struct {
	CPUs map[int]bool
	Mems map[int]bool
	// HugepageSizes are the page sizes as the CRI names them ("2MB").
	HugepageSizes map[string]bool
}

// ReadNode reads the node's online CPUs and memory nodes and its hugepage
// sizes. A node without NUMA information has one memory node, 0.
func ReadNode() Node {
	var n Node
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		n.CPUs, _ = ParseList(string(b))
	}
	if b, err := os.ReadFile("/sys/devices/system/node/online"); err == nil {
		n.Mems, _ = ParseList(string(b))
	} else if os.IsNotExist(err) {
		n.Mems = map[int]bool{0: true}
	}
	n.HugepageSizes = map[string]bool{}
	dirs, _ := filepath.Glob("/sys/kernel/mm/hugepages/hugepages-*kB")
	for _, d := range dirs {
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(d), "hugepages-"), "kB"), 10, 64)
		if err == nil {
			n.HugepageSizes[PageSizeName(kb<<10)] = true
		}
	}
	return n
}

// PageSizeName is a page size as the kubelet names it in the CRI: the
// largest unit that divides it ("2MB", "1GB", "64KB").
func PageSizeName(bytes uint64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"TB", 40}, {"GB", 30}, {"MB", 20}, {"KB", 10}} {
		if bytes >= 1<<u.shift && bytes%(1<<u.shift) == 0 {
			return strconv.FormatUint(bytes>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatUint(bytes, 10) + "B"
}

// CheckResources refuses resources this node cannot honour, naming the
// field (field is the request's path to r, "linux.resources") and the
// allowed range: cpusets beyond its CPUs or memory nodes, a memory limit
// below MinMemoryLimit, a hugepage size it does not have.
func (n Node) CheckResources(field string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	if err := checkSubset(field+".cpuset_cpus", r.GetCpusetCpus(), n.CPUs, "CPUs"); err != nil {
		return err
	}
	if err := checkSubset(field+".cpuset_mems", r.GetCpusetMems(), n.Mems, "memory nodes"); err != nil {
		return err
	}
	if v := r.GetMemoryLimitInBytes(); v > 0 && v < MinMemoryLimit {
		return invalid("%s.memory_limit_in_bytes %d: must be at least %d (%d MiB), what a container needs to start", field, v, MinMemoryLimit, MinMemoryLimit>>20)
	}
	for _, h := range r.GetHugepageLimits() {
		if n.HugepageSizes != nil && !n.HugepageSizes[h.GetPageSize()] {
			return invalid("%s.hugepage_limits.page_size %q: this node has %s", field, h.GetPageSize(), sizes(n.HugepageSizes))
		}
	}
	return nil
}

func checkSubset(field, list string, have map[int]bool, what string) error {
	want, err := ParseList(list)
	if err != nil {
		return invalid("%s %q: %v", field, list, err)
	}
	if have == nil {
		return nil
	}
	for id := range want {
		if !have[id] {
			return invalid("%s %q: %d is not among this node's %s (%s)", field, list, id, what, FormatList(have))
		}
	}
	return nil
}

func sizes(m map[string]bool) string {
	if len(m) == 0 {
		return "no hugepages"
	}
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return "page sizes " + strings.Join(s, ", ")
}
