package cri

import (
	"fmt"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/sandbox"
)

// BenchmarkPodStatsReply is what a ListPodSandboxStats call costs once the
// usage is collected (runtime/collector): building the reply of n pods of
// one container each, with the kubelet's labels, and encoding it.
func BenchmarkPodStatsReply(b *testing.B) {
	for _, n := range []int{10, 250} {
		s := NewServer(Options{})
		pods := make([]*sandbox.Stats, n)
		ctrs := map[string][]*container.Stats{}
		now := time.Now()
		u := uint64(1 << 20)
		for i := range pods {
			id := fmt.Sprintf("%064x", i+1)
			sb := &sandbox.Sandbox{ID: id, Config: sandbox.Config{
				Metadata:    sandbox.Metadata{Name: fmt.Sprintf("pod-%d", i), UID: "0b6e5f8a-5d2c-4f43-9d0a-" + id[:12], Namespace: "default"},
				Labels:      map[string]string{"io.kubernetes.pod.name": fmt.Sprintf("pod-%d", i), "io.kubernetes.pod.namespace": "default", "app": "x"},
				Annotations: map[string]string{"kubernetes.io/config.seen": now.String(), "kubernetes.io/config.source": "api"},
			}}
			pods[i] = &sandbox.Stats{
				Sandbox: sb, Time: now, CPU: &sandbox.CPUStats{UsageNanos: u, NanoCores: u},
				Memory:    &sandbox.MemoryStats{WorkingSet: u, Usage: u, RSS: u, PageFaults: u},
				Processes: &u,
				Network:   &sandbox.NetworkStats{Time: now, Interfaces: []sandbox.Interface{{Name: "eth0", RxBytes: u, TxBytes: u}}},
			}
			rec := &container.Record{ID: fmt.Sprintf("%064x", i+1<<40), PodID: id, Name: "c",
				Labels:      map[string]string{"io.kubernetes.container.name": "c", "io.kubernetes.pod.name": fmt.Sprintf("pod-%d", i), "io.kubernetes.pod.namespace": "default"},
				Annotations: map[string]string{"io.kubernetes.container.hash": "8e1a3b4f", "io.kubernetes.container.restartCount": "0"},
			}
			ctrs[id] = []*container.Stats{{Record: rec, Time: now, CPU: &container.CPUStats{UsageNanos: u, NanoCores: u},
				Memory: &container.MemoryStats{WorkingSet: u, Usage: u, RSS: u}, Layer: container.LayerStats{Mountpoint: "/x", Bytes: u, Inodes: u}}}
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			codec := s.Codec()
			for range b.N {
				r := &runtimeapi.ListPodSandboxStatsResponse{}
				for _, st := range pods {
					r.Stats = append(r.Stats, s.podStats(st, ctrs[st.Sandbox.ID]))
				}
				data, err := codec.Marshal(r)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
