package sandbox

import (
	"github.com/berth-dev/berth/runtime/collector"
)

// newStatsCollector keeps the ready pods' usage read every period while
// the stats lists are called (Options.StatsCollectPeriod): a list of 250
// pods cost 50-80 ms of cgroup and net/dev reads in the call, and the
// kubelet asks for it every 10 s or so, as cAdvisor's housekeeping reads
// on its own. The collector's reads are CPU samples like the calls': the
// pods' nanoCores are rates between consecutive reads, whoever made them.
func newStatsCollector(m *Manager) *collector.Collector[*Sandbox, *Stats] {
	return collector.New(collector.Options[*Sandbox, *Stats]{
		Name:   "pods",
		Period: m.opts.StatsCollectPeriod,
		Key:    func(sb *Sandbox) collector.Key { return collector.Key{ID: sb.ID, Born: sb.CreatedAt} },
		All:    func() []*Sandbox { return m.readyPods(Filter{}) },
		Read:   func(pods []*Sandbox) []*Stats { return readPods(pods, statsOf) },
		Forget: forgetPods,
	})
}
