// Package metrics holds berthd's Prometheus metrics: CRI call latency and
// errors by method and gRPC code, image pulls (durations and bytes), and the
// number of pods and containers by state, counted when scraped.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	rpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "berth", Subsystem: "cri", Name: "request_duration_seconds",
		Help:    "Time taken by CRI calls, by method (a stream counts until it ends).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"method"})
	rpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "berth", Subsystem: "cri", Name: "requests_total",
		Help: "CRI calls by method and gRPC code.",
	}, []string{"method", "code"})
	rpcErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "berth", Subsystem: "cri", Name: "errors_total",
		Help: "CRI calls that failed, by method and gRPC code.",
	}, []string{"method", "code"})
	pullDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "berth", Subsystem: "image", Name: "pull_duration_seconds",
		Help:    "Time taken by successful image pulls.",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
	})
	pullBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "berth", Subsystem: "image", Name: "pull_bytes_total",
		Help: "Unpacked bytes of the images pulled successfully.",
	})
)

// registry is berthd's own: the Go and process collectors plus the above.
var registry = prometheus.NewRegistry()

func init() {
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		rpcDuration, rpcRequests, rpcErrors, pullDuration, pullBytes,
	)
}

// ObserveRPC records one CRI call; code is the gRPC code's name ("OK").
func ObserveRPC(method, code string, d time.Duration) {
	rpcDuration.WithLabelValues(method).Observe(d.Seconds())
	rpcRequests.WithLabelValues(method, code).Inc()
	if code != "OK" {
		rpcErrors.WithLabelValues(method, code).Inc()
	}
}

// ObservePull records a successful image pull.
func ObservePull(d time.Duration, bytes uint64) {
	pullDuration.Observe(d.Seconds())
	pullBytes.Add(float64(bytes))
}

// Counts are the pods and containers by state ("ready", "running" ...).
type Counts struct {
	Pods       map[string]int
	Containers map[string]int
}

type countsCollector struct {
	counts           func() Counts
	pods, containers *prometheus.Desc
}

func (c *countsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pods
	ch <- c.containers
}

func (c *countsCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.counts()
	for st, v := range n.Pods {
		ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(v), st)
	}
	for st, v := range n.Containers {
		ch <- prometheus.MustNewConstMetric(c.containers, prometheus.GaugeValue, float64(v), st)
	}
}

// Handler serves the metrics in the Prometheus text format; counts is
// called on every scrape.
func Handler(counts func() Counts) http.Handler {
	reg := prometheus.NewRegistry()
	if counts != nil {
		reg.MustRegister(&countsCollector{
			counts:     counts,
			pods:       prometheus.NewDesc("berth_pods", "Pod sandboxes by state.", []string{"state"}, nil),
			containers: prometheus.NewDesc("berth_containers", "Containers by state.", []string{"state"}, nil),
		})
	}
	return promhttp.HandlerFor(prometheus.Gatherers{registry, reg}, promhttp.HandlerOpts{})
}
