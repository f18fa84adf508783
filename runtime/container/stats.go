package container

import (
	"context"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/usage"
)

// Stats is a container's resource usage at one moment.
type Stats struct {
	Record *Record
	Time   time.Time
	// CPU is nil when the container has no cgroup (not created or gone).
	CPU *CPUStats
	// Memory is nil likewise.
	Memory *MemoryStats
	// Layer is the writable layer's use.
	Layer LayerStats
	// Usage is the cgroup's detailed usage, which ListUsageByPod reads
	// instead of CPU and Memory (nil when the cgroup is gone).
	Usage *usage.Usage
}

// CPUStats are cumulative usage and the rate since the previous sample.
type CPUStats struct {
	UsageNanos uint64
	// NanoCores is the average use since the previous sample of this
	// container (0 at the first).
	NanoCores uint64
}

// MemoryStats are as the kubelet reads them.
type MemoryStats struct {
	WorkingSet, Usage, RSS, PageFaults, MajorPageFaults uint64
}

// LayerStats is the use of the writable layer.
type LayerStats struct {
	Mountpoint string
	Bytes      uint64
	Inodes     uint64
}

// Stats reads one container's usage.
func (m *Manager) Stats(ctx context.Context, id string) (*Stats, error) {
	id, err := m.resolveID(id)
	if err != nil {
		return nil, err
	}
	rec, err := m.store.Get(id)
	if err != nil {
		return nil, err
	}
	if rec, err = m.refresh(ctx, rec, false); err != nil {
		return nil, err
	}
	return m.stats(rec), nil
}

// ListStats reads the usage of the containers the filter selects that are
// not exited.
func (m *Manager) ListStats(ctx context.Context, f Filter) []*Stats {
	var live []*Record
	for _, r := range m.List(ctx, f) {
		if r.Status.State != Exited {
			live = append(live, r)
		}
	}
	return m.collected(live)
}

// collected is the records' usage: their collected samples while the
// collector runs (statscollect.go), read now otherwise and for the
// records it has none of.
func (m *Manager) collected(recs []*Record) []*Stats {
	out := m.collect.Get(recs)
	for i, st := range out {
		// The reply shows the container as it is now, the usage as read.
		if st.Record != recs[i] {
			c := *st
			c.Record = recs[i]
			out[i] = &c
		}
	}
	return out
}

// readAll reads the records' usage, on as many threads as the Go runtime
// runs at once: the reads are system calls each, and no lock is held
// across them.
func (m *Manager) readAll(recs []*Record, read func(*Record) *Stats) []*Stats {
	out := make([]*Stats, len(recs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := min(len(recs), runtime.GOMAXPROCS(0)); w > 0; w-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(recs); i = int(next.Add(1) - 1) {
				out[i] = read(recs[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// ListStatsByPod reads the usage of the live containers of the given pods
// in one pass over the records (a pod list's stats need no pass a pod),
// grouped by pod id, oldest first in each.
func (m *Manager) ListStatsByPod(pods map[string]bool) map[string][]*Stats {
	return m.byPod(pods, m.collected)
}

// ListUsageByPod is ListStatsByPod with the cgroups' detailed usage (for
// metrics): one read of each cgroup, and the CPU samples of the stats'
// rates left alone.
func (m *Manager) ListUsageByPod(pods map[string]bool) map[string][]*Stats {
	return m.byPod(pods, func(recs []*Record) []*Stats { return m.readAll(recs, m.usage) })
}

func (m *Manager) byPod(pods map[string]bool, read func([]*Record) []*Stats) map[string][]*Stats {
	out := make(map[string][]*Stats, len(pods))
	for _, st := range read(m.store.view(func(r *Record) bool { return pods[r.PodID] && r.Status.State != Exited })) {
		out[st.Record.PodID] = append(out[st.Record.PodID], st)
	}
	return out
}

func (m *Manager) usage(rec *Record) *Stats {
	st := &Stats{Record: rec, Time: time.Now()}
	if rec.Status.State != Exited {
		if u, err := usage.Cgroup(rec.Cgroup); err == nil {
			st.Time, st.Usage = u.Time, u
		}
	}
	st.Layer = layerUse.get(filepath.Join(rec.LayerDir, "upper"))
	return st
}

func (m *Manager) stats(rec *Record) *Stats {
	st := &Stats{Record: rec, Time: time.Now()}
	if rec.Status.State != Exited {
		if cs, err := cgroups.Usage(rec.Cgroup); err == nil {
			st.Time = cs.Time
			st.CPU = &CPUStats{UsageNanos: cs.CPUUsageNanos, NanoCores: m.nanoCores(rec.ID, cs.Time, cs.CPUUsageNanos)}
			st.Memory = &MemoryStats{
				WorkingSet: cs.MemoryWorkingSet, Usage: cs.MemoryUsage, RSS: cs.MemoryRSS,
				PageFaults: cs.PageFaults, MajorPageFaults: cs.MajorPageFaults,
			}
		}
	}
	st.Layer = layerUse.get(filepath.Join(rec.LayerDir, "upper"))
	return st
}

// nanoCores is the CPU rate between the previous sample and this one.
func (m *Manager) nanoCores(id string, at time.Time, usage uint64) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, ok := m.cpu[id]
	if ok && !at.After(prev.at) {
		// A read that began before the previous one ended (a call and
		// the collector): the newer sample stays.
		return 0
	}
	m.cpu[id] = cpuSample{at: at, usage: usage}
	return rate(prev, cpuSample{at: at, usage: usage}, ok)
}

func rate(prev, cur cpuSample, ok bool) uint64 {
	if !ok || !cur.at.After(prev.at) || cur.usage < prev.usage {
		return 0
	}
	elapsed := cur.at.Sub(prev.at)
	return uint64(float64(cur.usage-prev.usage) / elapsed.Seconds())
}
