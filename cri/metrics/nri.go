package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	nriDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "berth", Subsystem: "nri", Name: "plugin_call_duration_seconds",
		Help:    "Time taken by NRI plugin calls, by plugin and operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"plugin", "operation"})
	nriErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "berth", Subsystem: "nri", Name: "plugin_errors_total",
		Help: "NRI plugin calls that failed, by plugin and operation.",
	}, []string{"plugin", "operation"})
	nriPlugins = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "berth", Subsystem: "nri", Name: "plugins",
		Help: "NRI plugins connected.",
	})
)

func init() {
	registry.MustRegister(nriDuration, nriErrors, nriPlugins)
}

// ObserveNRICall records how long one call of an NRI plugin took.
func ObserveNRICall(plugin, op string, d time.Duration) {
	nriDuration.WithLabelValues(plugin, op).Observe(d.Seconds())
}

// CountNRIError records a failed call of an NRI plugin.
func CountNRIError(plugin, op string) {
	nriErrors.WithLabelValues(plugin, op).Inc()
}

// SetNRIPlugins records how many NRI plugins are connected.
func SetNRIPlugins(n int) { nriPlugins.Set(float64(n)) }
