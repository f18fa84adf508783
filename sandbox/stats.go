package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/usage"
)

// Stats is a pod's resource usage at one moment, read from its cgroup (which
// holds the shim, the pause process and every container) and its network
// namespace.
type Stats struct {
	Sandbox *Sandbox
	Time    time.Time
	// CPU, Memory and Processes are nil when the pod's cgroup is gone.
	CPU       *CPUStats
	Memory    *MemoryStats
	Processes *uint64
	// Network is nil for a pod on the node's network or without its pin.
	Network *NetworkStats
	// Usage is the cgroup's detailed usage, which ListUsage reads instead
	// of CPU, Memory and Processes (nil when the cgroup is gone).
	Usage *usage.Usage
}

// CPUStats are cumulative usage and the rate since the previous sample.
type CPUStats struct {
	UsageNanos uint64
	// NanoCores is the average use since this pod's previous sample (0 at
	// the first).
	NanoCores uint64
}

// MemoryStats are as the kubelet reads them.
type MemoryStats struct {
	WorkingSet, Usage, RSS, PageFaults, MajorPageFaults uint64
}

// NetworkStats are the counters of the pod's interfaces (loopback left out).
type NetworkStats struct {
	Time       time.Time
	Interfaces []Interface
}

// Interface is one network interface's counters.
type Interface struct {
	Name                                       string
	RxBytes, RxErrors, TxBytes, TxErrors       uint64
	RxPackets, TxPackets, RxDropped, TxDropped uint64
}

// DefaultInterface is the interface CNI plugins give a pod.
const DefaultInterface = "eth0"

type cpuSample struct {
	at    time.Time
	usage uint64
}

// samples keeps each pod's previous CPU sample. Pod ids are random and
// unique, so one table serves every Manager.
var samples = struct {
	sync.Mutex
	m map[string]cpuSample
}{m: map[string]cpuSample{}}

func nanoCores(id string, at time.Time, usage uint64) uint64 {
	samples.Lock()
	defer samples.Unlock()
	prev, ok := samples.m[id]
	if ok && !at.After(prev.at) {
		// A read that began before the previous one ended (a call and
		// the collector): the newer sample stays.
		return 0
	}
	samples.m[id] = cpuSample{at: at, usage: usage}
	if !ok || usage < prev.usage {
		return 0
	}
	return uint64(float64(usage-prev.usage) / at.Sub(prev.at).Seconds())
}

// Stats reads one pod's usage.
func (m *Manager) Stats(id string) (*Stats, error) {
	sb, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	return statsOf(sb), nil
}

// ListStats is the usage of the ready pods the filter selects: their
// collected samples while the collector runs (statscollect.go), read now
// otherwise and for the pods it has none of.
func (m *Manager) ListStats(f Filter) []*Stats {
	pods := m.readyPods(f)
	out := m.collect.Get(pods)
	for i, st := range out {
		// The reply shows the pod as it is now, the usage as read.
		if st.Sandbox != pods[i] {
			c := *st
			c.Sandbox = pods[i]
			out[i] = &c
		}
	}
	if f.ID == "" && len(f.LabelSelector) == 0 {
		forgetGone(pods)
	}
	return out
}

// ListUsage reads the detailed usage of the ready pods the filter selects
// (for metrics): one read of each pod's cgroup, and the CPU samples that
// ListStats' rates are computed from are left alone, so that a metrics
// call between two stats calls does not shorten their interval.
func (m *Manager) ListUsage(f Filter) []*Stats {
	pods := m.readyPods(f)
	out := readPods(pods, usageOf)
	if f.ID == "" && len(f.LabelSelector) == 0 {
		forgetGone(pods)
	}
	return out
}

// readyPods are the ready pods the filter selects.
func (m *Manager) readyPods(f Filter) []*Sandbox {
	ready := StateReady
	f.State = &ready
	sts := m.List(f)
	pods := make([]*Sandbox, len(sts))
	for i, st := range sts {
		pods[i] = st.Sandbox
	}
	return pods
}

// readPods reads the pods' usage. The reads are system calls each: on as
// many threads as the Go runtime runs.
func readPods(pods []*Sandbox, read func(*Sandbox) *Stats) []*Stats {
	out := make([]*Stats, len(pods))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := min(len(pods), runtime.GOMAXPROCS(0)); w > 0; w-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(pods); i = int(next.Add(1) - 1) {
				out[i] = read(pods[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// forgetGone drops the samples of the pods not among the ready ones.
func forgetGone(ready []*Sandbox) {
	live := make(map[string]bool, len(ready))
	for _, sb := range ready {
		live[sb.ID] = true
	}
	forgetPods(live)
}

func forgetPods(live map[string]bool) {
	samples.Lock()
	for id := range samples.m {
		if !live[id] {
			delete(samples.m, id)
		}
	}
	samples.Unlock()
	forgetNetPids(live)
}

func statsOf(sb *Sandbox) *Stats {
	st := &Stats{Sandbox: sb, Time: time.Now()}
	var pids []int
	if sb.Cgroup != "" {
		if cs, err := cgroups.Usage(sb.Cgroup); err == nil {
			st.Time = cs.Time
			st.CPU = &CPUStats{UsageNanos: cs.CPUUsageNanos, NanoCores: nanoCores(sb.ID, cs.Time, cs.CPUUsageNanos)}
			st.Memory = &MemoryStats{
				WorkingSet: cs.MemoryWorkingSet, Usage: cs.MemoryUsage, RSS: cs.MemoryRSS,
				PageFaults: cs.PageFaults, MajorPageFaults: cs.MajorPageFaults,
			}
		}
		if g, err := cgroupfs.Open(sb.Cgroup); err == nil {
			if pids, err = g.Pids(); err == nil {
				n := uint64(len(pids))
				st.Processes = &n
			}
		}
	}
	st.Network = networkOf(sb, pids)
	return st
}

// usageOf reads the pod's cgroup in detail, once, and its network.
func usageOf(sb *Sandbox) *Stats {
	st := &Stats{Sandbox: sb, Time: time.Now()}
	var pids []int
	if sb.Cgroup != "" {
		if u, err := usage.Cgroup(sb.Cgroup); err == nil {
			st.Time, st.Usage, pids = u.Time, u, u.Pids
		}
	}
	st.Network = networkOf(sb, pids)
	return st
}

// networkOf reads the counters of a ready pod's own network namespace;
// pids are its cgroup's processes.
func networkOf(sb *Sandbox, pids []int) *NetworkStats {
	if sb.NetNS == "" || sb.Config.HostNetwork || sb.State != StateReady {
		return nil
	}
	ifs, err := podInterfaces(sb, pids)
	if err != nil {
		return nil
	}
	return &NetworkStats{Time: time.Now(), Interfaces: ifs}
}

// NetnsInterfaces reads the interface counters of the network namespace
// pinned at pin. /sys/class/net shows the namespace sysfs was mounted in,
// so the counters come from /proc/thread-self/net/dev, read by a thread that
// joined the namespace for the time of the read.
func NetnsInterfaces(pin string) ([]Interface, error) {
	var b []byte
	err := cni.InNetNS(pin, func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read interfaces of netns %s: %w", pin, err)
	}
	return parseNetDev(b)
}

// parseNetDev reads /proc/net/dev: two header lines, then
// "name: rx bytes packets errs drop fifo frame compressed multicast tx bytes packets errs drop ...".
func parseNetDev(b []byte) ([]Interface, error) {
	var out []Interface
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("net/dev line %q", sc.Text())
		}
		name = strings.TrimSpace(name)
		if name == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 12 {
			return nil, fmt.Errorf("net/dev line %q: %d fields", sc.Text(), len(f))
		}
		v := make([]uint64, 12)
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("net/dev line %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		out = append(out, Interface{
			Name: name, RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	return out, sc.Err()
}
