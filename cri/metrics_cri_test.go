package cri

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/usage"
	"github.com/berth-dev/berth/sandbox"
)

// Every metric berth sends has a descriptor with as many label keys as the
// metric has label values: the kubelet builds Prometheus series from them.
func TestMetricsMatchDescriptors(t *testing.T) {
	descs, err := (&Server{}).ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, d := range descs.Descriptors {
		if d.Help == "" || len(d.LabelKeys) == 0 {
			t.Errorf("descriptor %s lacks help or labels", d.Name)
		}
		if _, dup := keys[d.Name]; dup {
			t.Errorf("descriptor %s twice", d.Name)
		}
		keys[d.Name] = len(d.LabelKeys)
	}
	pod := &sandbox.Sandbox{ID: "p", Cgroup: "/berth-test-none/p", Config: sandbox.Config{Metadata: sandbox.Metadata{Name: "n", Namespace: "ns"}}}
	rec := &container.Record{ID: "c", Name: "ctr", Cgroup: "/berth-test-none/p/c", Resources: &container.Resources{CPUQuota: 20000, CPUPeriod: 100000}}
	rec.Status.StartedAt = time.Now()
	cm := containerMetrics(&container.Stats{Record: rec, Layer: container.LayerStats{Mountpoint: t.TempDir(), Bytes: 1}}, pod)
	ms := &metricSet{labels: make([]string, len(containerLabels))}
	ms.addCgroup(&usage.Usage{IO: []usage.IO{{Device: "8:0", ReadBytes: 1}}})
	st := &sandbox.Stats{Sandbox: pod, Network: &sandbox.NetworkStats{Interfaces: []sandbox.Interface{{Name: "eth0", RxBytes: 5}}}}
	pm := (&Server{}).podMetrics(st, nil)
	seen := map[string]bool{}
	for _, m := range append(append(cm.Metrics, ms.out...), pm.Metrics...) {
		n, ok := keys[m.Name]
		if !ok || n != len(m.LabelValues) {
			t.Errorf("metric %s: %d label values, descriptor %v with %d", m.Name, len(m.LabelValues), ok, n)
		}
		if m.MetricType != metricKinds[m.Name] {
			t.Errorf("metric %s has type %v", m.Name, m.MetricType)
		}
		seen[m.Name] = true
	}
	for name := range keys {
		if !seen[name] {
			t.Errorf("descriptor %s but no metric", name)
		}
	}
}
