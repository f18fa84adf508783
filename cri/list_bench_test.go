package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
)

// listServer is a Server over n container records shaped as the kubelet
// makes them (its labels and annotations), spread over pods of 1.
func listServer(b testing.TB, n int, kubelet bool) *Server {
	b.Helper()
	dir := b.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "berth.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	st, err := container.OpenStore(db)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		pod := fmt.Sprintf("%064x", i/1+1<<40)
		name := fmt.Sprintf("c%d", i)
		r := &container.Record{
			ID: fmt.Sprintf("%064x", i+1), PodID: pod, Name: name, Image: "sha256:" + pod, UserImage: "docker.io/library/busybox:latest",
			ImageID: "sha256:" + pod, ImageRef: "docker.io/library/busybox@sha256:" + pod,
			Labels: map[string]string{
				"io.kubernetes.container.name": name, "io.kubernetes.pod.name": "pod-" + name,
				"io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": "0b6e5f8a-5d2c-4f43-9d0a-" + name,
			},
			Annotations: map[string]string{
				"io.kubernetes.container.hash": "8e1a3b4f", "io.kubernetes.container.restartCount": "0",
				"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
				"io.kubernetes.container.terminationMessagePolicy": "File",
				"io.kubernetes.pod.terminationGracePeriod":         "30",
			},
			Status: container.Status{State: container.Running, Pid: 1000 + i, CreatedAt: start.Add(time.Duration(i))},
		}
		if !kubelet { // as make bench's list makes them
			r.Labels, r.Annotations = map[string]string{"bench": "containers"}, nil
		}
		if err := st.Add(r); err != nil {
			b.Fatal(err)
		}
	}
	m, err := container.New(container.Options{DB: db, Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	// With no shim to ask, the start's refresh marks every record exited:
	// let it finish before measuring.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		running := container.Running
		if len(m.List(context.Background(), container.Filter{State: &running})) == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("records still running after 2 minutes")
		}
	}
	return NewServer(Options{Containers: m})
}

// BenchmarkListContainers is one ListContainers call with its reply
// encoded as berthd's gRPC server does; "uncached" is the same reply built
// and encoded afresh at each call, as berth did before replycache.go.
func BenchmarkListContainers(b *testing.B) {
	for _, c := range []struct {
		n       int
		kubelet bool
	}{{100, false}, {1000, false}, {1000, true}} {
		name := fmt.Sprint(c.n)
		if c.kubelet {
			name += "-kubelet"
		}
		n := c.n
		s := listServer(b, n, c.kubelet)
		ctx := context.Background()
		for _, cached := range []bool{true, false} {
			codec := s.Codec()
			label := name
			if !cached {
				label += "-uncached"
				codec = encoding.GetCodecV2("proto")
			}
			b.Run(label, func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					r := &runtimeapi.ListContainersResponse{}
					if cached {
						var err error
						if r, err = s.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
							b.Fatal(err)
						}
					} else {
						for _, rec := range s.opts.Containers.List(ctx, container.Filter{}) {
							r.Containers = append(r.Containers, toContainer(rec))
						}
					}
					if len(r.Containers) != n {
						b.Fatalf("%d containers listed, want %d", len(r.Containers), n)
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
}

// BenchmarkListContainersDecode is the client's share of a ListContainers
// call: decoding the reply, which no server change makes cheaper.
func BenchmarkListContainersDecode(b *testing.B) {
	s := listServer(b, 1000, false)
	r, err := s.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil {
		b.Fatal(err)
	}
	data, err := s.Codec().Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	wire := data.Materialize()
	b.ReportAllocs()
	for range b.N {
		if err := proto.Unmarshal(wire, &runtimeapi.ListContainersResponse{}); err != nil {
			b.Fatal(err)
		}
	}
}
