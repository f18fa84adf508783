package container

import (
	"github.com/berth-dev/berth/runtime/collector"
)

// newStatsCollector keeps the live containers' usage read every period
// while the stats lists are called (Options.StatsCollectPeriod), as
// cAdvisor's housekeeping does for the kubelet: a list no longer reads
// every container's cgroup in the call. The collector's reads are CPU
// samples like the calls': nanoCores are rates between consecutive reads.
// A record's identity is its id and creation time; the samples of removed
// containers go at the next round, and so do CPU samples a round's read
// put back after the removal dropped them.
func newStatsCollector(m *Manager) *collector.Collector[*Record, *Stats] {
	return collector.New(collector.Options[*Record, *Stats]{
		Name:   "containers",
		Period: m.opts.StatsCollectPeriod,
		Key:    func(r *Record) collector.Key { return collector.Key{ID: r.ID, Born: r.Status.CreatedAt} },
		All: func() []*Record {
			return m.store.view(func(r *Record) bool { return r.Status.State != Exited })
		},
		Read: func(recs []*Record) []*Stats { return m.readAll(recs, m.stats) },
		Forget: func(live map[string]bool) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for id := range m.cpu {
				if !live[id] {
					delete(m.cpu, id)
				}
			}
		},
	})
}
