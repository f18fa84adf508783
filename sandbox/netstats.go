package sandbox

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/runtime/cgroupfs"
)

// A pod's interface counters are read from /proc/<pid>/net/dev of a
// process in its network namespace (one of its containers'): no thread
// has to join the namespace, which is a locked OS thread and two setns a
// pod. The pod has no process of its own there (its shim is in the node's
// namespaces, and only shared-PID pods have a pause process), so the
// candidates are the processes of its cgroup; the one that matched is
// tried first next time. A pod with none falls back to NetnsInterfaces.

// netPids remembers, by pod id, the process last found in the pod's network
// namespace.
var netPids = struct {
	sync.Mutex
	m map[string]int
}{m: map[string]int{}}

// maxNetCandidates bounds the processes tried a pod before the fallback.
const maxNetCandidates = 8

// nsKey names a namespace: the device and inode of its nsfs file.
type nsKey struct{ dev, ino uint64 }

func nsKeyOf(path string) (nsKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsKey{}, err
	}
	return nsKey{uint64(st.Dev), st.Ino}, nil
}

// podInterfaces reads the counters of the pod's network namespace, through
// one of pids when one of them is in it.
func podInterfaces(sb *Sandbox, pids []int) ([]Interface, error) {
	if len(pids) > 0 {
		if want, err := nsKeyOf(sb.NetNS); err == nil {
			netPids.Lock()
			last, ok := netPids.m[sb.ID]
			netPids.Unlock()
			tried := 0
			try := func(pid int) ([]Interface, bool) {
				tried++
				b, err := netDevOf(pid, want)
				if err != nil {
					return nil, false
				}
				ifs, err := parseNetDev(b)
				if err != nil {
					return nil, false
				}
				if pid != last {
					netPids.Lock()
					netPids.m[sb.ID] = pid
					netPids.Unlock()
				}
				return ifs, true
			}
			if ok {
				if ifs, ok := try(last); ok {
					return ifs, nil
				}
			}
			for _, pid := range pids {
				if tried >= maxNetCandidates {
					break
				}
				if pid == last {
					continue
				}
				if ifs, ok := try(pid); ok {
					return ifs, nil
				}
			}
		}
	}
	klog.V(4).InfoS("No process in the pod's netns: reading its counters from inside it", "pod", sb.ID)
	return NetnsInterfaces(sb.NetNS)
}

// errOtherNetns: the process is not (or no longer) in the namespace asked.
var errOtherNetns = errors.New("process is in another network namespace")

// netDevOf reads /proc/<pid>/net/dev, the counters of the network namespace
// of process pid, when that namespace is want. The process is held by a
// descriptor of its /proc dir, which goes stale (ESRCH, ENOENT) when it
// ends, so a reused pid is never read; its namespace is checked before and
// after net/dev is opened, which binds the file to the namespace of the
// moment.
func netDevOf(pid int, want nsKey) ([]byte, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d", pid)
	}
	dir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /proc/%d: %w", pid, err)
	}
	defer unix.Close(dir)
	same := func() error {
		var st unix.Stat_t
		if err := unix.Fstatat(dir, "ns/net", &st, 0); err != nil {
			return fmt.Errorf("netns of pid %d: %w", pid, err)
		}
		if (nsKey{uint64(st.Dev), st.Ino}) != want {
			return errOtherNetns
		}
		return nil
	}
	if err := same(); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(dir, "net/dev", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open net/dev of pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if err := same(); err != nil {
		return nil, err
	}
	b, err := cgroupfs.ReadFd(fd, "net/dev")
	if err != nil {
		return nil, fmt.Errorf("read net/dev of pid %d: %w", pid, err)
	}
	return b, nil
}

// forgetNetPids drops the remembered processes of pods not in live.
func forgetNetPids(live map[string]bool) {
	netPids.Lock()
	defer netPids.Unlock()
	for id := range netPids.m {
		if !live[id] {
			delete(netPids.m, id)
		}
	}
}
