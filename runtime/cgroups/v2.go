package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// v2Controllers are the controllers berth enables for the cgroups below a
// pod's, when the kernel has them: a child's limits and statistics files
// only exist when its parent delegates the controller.
var v2Controllers = []string{"cpu", "cpuset", "memory", "pids", "io", "hugetlb"}

// EnableControllers makes every cgroup from the hierarchy root down to path
// (path included) delegate the controllers of v2Controllers its parent
// offers, making the missing ones. path must hold no process itself (the kernel refuses controllers
// to a cgroup with processes when it has children): a pod's shim lives in a
// leaf below it. A no-op on cgroup v1.
func EnableControllers(path string) error {
	if !Unified() {
		return nil
	}
	return enableControllers(Root, path)
}

func enableControllers(mount, path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	dir := mount
	for _, part := range append([]string{""}, strings.Split(strings.TrimPrefix(path, "/"), "/")...) {
		dir = filepath.Join(dir, part)
		// Missing parents are made, as the library makes them.
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		if err != nil {
			return fmt.Errorf("controllers of cgroup %s: %w", dir, err)
		}
		have := strings.Fields(string(b))
		var want []string
		for _, c := range v2Controllers {
			for _, h := range have {
				if c == h {
					want = append(want, "+"+c)
				}
			}
		}
		if len(want) == 0 {
			continue
		}
		// One write per controller: one the kernel refuses (cpuset in a
		// threaded subtree, say) must not keep the others off.
		var errs []error
		for _, c := range want {
			if err := writeExisting(filepath.Join(dir, "cgroup.subtree_control"), c); err != nil {
				errs = append(errs, fmt.Errorf("enable %s in cgroup %s: %w", c[1:], dir, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

// kubeletWeight is the cgroup v2 cpu.weight of CPU shares as the kubelet
// converts them for the pod and QoS cgroups it makes (so that a container
// weighs against its siblings as the kubelet expects): [2, 262144] maps
// linearly onto [1, 10000].
func kubeletWeight(shares uint64) uint64 {
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// v2Resources converts OCI limits into cgroup v2 files: containerd's
// conversion with the kubelet's CPU weight, memory.swap.max as swap alone
// (no swap when only a memory limit is given, as containerd's CRI does),
// and the unified map's files written as given afterwards (v2Unified).
func v2Resources(mount, path string, r *specs.LinuxResources) *cgroup2.Resources {
	out := cgroup2.ToResources(r)
	if r.CPU != nil && r.CPU.Shares != nil && *r.CPU.Shares > 0 {
		w := kubeletWeight(*r.CPU.Shares)
		out.CPU.Weight = &w
	}
	if m := r.Memory; m != nil && out.Memory != nil {
		out.Memory.Swap = nil
		// -1 (unlimited) leaves memory.swap.max as it is, "max" in a new
		// cgroup: the library would write "-1", which the kernel refuses.
		if m.Limit != nil && *m.Limit > 0 && (m.Swap == nil || *m.Swap != -1) && swapAccounting(mount, path) {
			var swap int64 // memory+swap == memory: no swap
			if m.Swap != nil && *m.Swap > *m.Limit {
				swap = *m.Swap - *m.Limit
			}
			out.Memory.Swap = &swap
		}
		if m.Reservation != nil && *m.Reservation <= 0 {
			out.Memory.Low = nil
		}
	}
	return out
}

// swapAccounting reports whether memory.swap.max exists (a kernel with
// swap accounting) for the cgroup or, before it is made, its parent.
func swapAccounting(mount, path string) bool {
	for _, p := range []string{path, filepath.Dir(path)} {
		if _, err := os.Stat(filepath.Join(mount, p, "memory.swap.max")); err == nil {
			return true
		}
	}
	// The root has no memory.swap.max: ask whether the kernel offers it
	// through a sibling file of the controller.
	_, err := os.Stat(filepath.Join(mount, "memory.swap.current"))
	return err == nil
}

// v2Unified writes the CRI's unified map (memory.high, say): each key a
// file of the cgroup, no path.
func v2Unified(mount, path string, unified map[string]string) error {
	for k, v := range unified {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." || !strings.Contains(k, ".") {
			return fmt.Errorf("unified cgroup file %q is no cgroup file name", k)
		}
		if strings.HasPrefix(k, "cgroup.") && k != "cgroup.freeze" {
			return fmt.Errorf("unified cgroup file %q is not a limit", k)
		}
		f := filepath.Join(mount, path, k)
		if err := writeExisting(f, v); err != nil {
			if os.IsNotExist(err) {
				return fmt.Errorf("unified cgroup file %q: no such file (is its controller enabled?)", k)
			}
			return fmt.Errorf("write %s: %w", f, err)
		}
	}
	return nil
}

// ShimLeaf is the cgroup in a pod's cgroup that its shim and pause process
// live in, so that the pod's cgroup itself holds no process and can
// delegate controllers to its containers' cgroups (cgroup v2's rule; the
// systemd driver uses it on v1 too).
const ShimLeaf = "shim"

// writeExisting writes a cgroup file, never creating one.
func writeExisting(f, v string) error {
	fd, err := os.OpenFile(f, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fd.WriteString(v)
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return err
}
