package nri

import (
	"sort"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"

	"github.com/berth-dev/berth/cri/metrics"
)

// pluginMetrics is the adaptation's view of each plugin call: it feeds
// berth's Prometheus metrics, Status(verbose) and the errors that name the
// plugin that failed. The adaptation calls plugins one at a time, so the
// last failure of an operation is the one a failed request saw.
type pluginMetrics struct {
	mu      sync.Mutex
	count   int
	plugins map[string]*PluginInfo
	// failed is the plugin whose call of each operation failed last, and when.
	failed map[string]failure
	// calls is when each plugin was last called for each operation.
	calls map[string]map[string]time.Time
}

// PluginInfo is what Status(verbose) shows of an NRI plugin.
type PluginInfo struct {
	Name      string    `json:"name"`
	Calls     uint64    `json:"calls"`
	Errors    uint64    `json:"errors"`
	LastError string    `json:"lastError,omitempty"`
	LastCall  time.Time `json:"lastCall"`
}

var _ adaptation.Metrics = (*pluginMetrics)(nil)

func newPluginMetrics() *pluginMetrics {
	return &pluginMetrics{
		plugins: map[string]*PluginInfo{}, failed: map[string]failure{},
		calls: map[string]map[string]time.Time{},
	}
}

func (m *pluginMetrics) RecordPluginInvocation(plugin, op string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.plugins[plugin]
	if !ok {
		p = &PluginInfo{Name: plugin}
		m.plugins[plugin] = p
	}
	p.Calls++
	now := time.Now()
	p.LastCall = now
	if err != nil {
		p.Errors++
		p.LastError = err.Error()
		m.failed[op] = failure{plugin, now}
		metrics.CountNRIError(plugin, op)
		return
	}
	if m.calls[op] == nil {
		m.calls[op] = map[string]time.Time{}
	}
	m.calls[op][plugin] = now
}

func (m *pluginMetrics) RecordPluginLatency(plugin, op string, d time.Duration) {
	metrics.ObserveNRICall(plugin, op, d)
}

func (m *pluginMetrics) RecordPluginAdjustments(string, string, *adaptation.ContainerAdjustment, int, int) {
}

func (m *pluginMetrics) UpdatePluginCount(n int) {
	m.mu.Lock()
	m.count = n
	m.mu.Unlock()
	metrics.SetNRIPlugins(n)
}

type failure struct {
	plugin string
	at     time.Time
}

// failedSince is the plugin whose call of op failed since a time, if any.
func (m *pluginMetrics) failedSince(op string, since time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.failed[op]; ok && !f.at.Before(since) {
		return f.plugin
	}
	return ""
}

// answered are the plugins that answered op since a time, by name.
func (m *pluginMetrics) answered(op string, since time.Time) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for p, t := range m.calls[op] {
		if !t.Before(since) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Plugins is what Status(verbose) shows: the plugins connected (their
// count, as the adaptation keeps it) and every plugin that was called.
func (n *NRI) Plugins() (connected int, seen []PluginInfo) {
	if n == nil {
		return 0, nil
	}
	m := n.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.plugins {
		seen = append(seen, *p)
	}
	sort.Slice(seen, func(i, j int) bool { return seen[i].Name < seen[j].Name })
	return m.count, seen
}
