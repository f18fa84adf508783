package cri

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/sandbox"
)

// decoded is what a client reads of the codec's encoding of v.
func decoded[M proto.Message](t *testing.T, c encoding.CodecV2, v, into M) M {
	t.Helper()
	data, err := c.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Free()
	if err := proto.Unmarshal(data.Materialize(), into); err != nil {
		t.Fatal(err)
	}
	return into
}

func TestCodecListContainers(t *testing.T) {
	s := listServer(t, 30, true)
	ctx := context.Background()
	want := &runtimeapi.ListContainersResponse{}
	for _, r := range s.opts.Containers.List(ctx, container.Filter{}) {
		want.Containers = append(want.Containers, toContainer(r))
	}
	c := s.Codec()
	for i := range 2 { // built, then from the cache
		r, err := s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := decoded(t, c, r, &runtimeapi.ListContainersResponse{}); !proto.Equal(got, want) {
			t.Fatalf("call %d: decoded reply differs from the reply built afresh:\n%v\nwant\n%v", i, got, want)
		}
	}
	// A message the cache does not hold (a record replaced since) is
	// encoded as it is; an empty reply is empty.
	r, _ := s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	r.Containers[3] = proto.Clone(r.Containers[3]).(*runtimeapi.Container)
	r.Containers[3].State = runtimeapi.ContainerState_CONTAINER_EXITED
	if got := decoded(t, c, r, &runtimeapi.ListContainersResponse{}); !proto.Equal(got, r) {
		t.Errorf("reply with an uncached item decodes as %v", got.Containers[3])
	}
	empty := &runtimeapi.ListContainersResponse{}
	if got := decoded(t, c, empty, &runtimeapi.ListContainersResponse{}); len(got.Containers) != 0 {
		t.Errorf("empty reply decodes with %d containers", len(got.Containers))
	}
	// A filtered list is from the same cache.
	f := &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: want.Containers[5].Id}}
	r, err := s.ListContainers(ctx, f)
	if err != nil || len(r.Containers) != 1 {
		t.Fatalf("filtered list: %v, %v", r, err)
	}
	if got := decoded(t, c, r, &runtimeapi.ListContainersResponse{}); !proto.Equal(got.Containers[0], want.Containers[5]) {
		t.Errorf("filtered list decodes as %v", got)
	}
}

func TestReplyCachePods(t *testing.T) {
	at := time.Unix(1700000000, 0)
	pod := func(i int, ready bool) *sandbox.Status {
		return &sandbox.Status{Ready: ready, Sandbox: &sandbox.Sandbox{
			ID: fmt.Sprintf("pod%d", i), CreatedAt: at.Add(time.Duration(i)),
			Config: sandbox.Config{
				Metadata:       sandbox.Metadata{Name: fmt.Sprintf("p%d", i), UID: "u", Namespace: "ns", Attempt: 1},
				Labels:         map[string]string{"app": "web", "n": fmt.Sprint(i)},
				Annotations:    map[string]string{"a": "b"},
				RuntimeHandler: "runc",
			},
		}}
	}
	s := NewServer(Options{})
	c := s.Codec()
	check := func(sts []*sandbox.Status, all bool) {
		t.Helper()
		want := &runtimeapi.ListPodSandboxResponse{}
		for _, st := range sts {
			want.Items = append(want.Items, toPodSandbox(st))
		}
		r := &runtimeapi.ListPodSandboxResponse{Items: s.replies.podSandboxes(sts, all)}
		if got := decoded(t, c, r, &runtimeapi.ListPodSandboxResponse{}); !proto.Equal(got, want) {
			t.Fatalf("decoded reply differs:\n%v\nwant\n%v", got, want)
		}
	}
	check([]*sandbox.Status{pod(0, true), pod(1, true), pod(2, false)}, true)
	// A pod no longer ready is listed so; a pod gone leaves the cache at
	// the next full list.
	check([]*sandbox.Status{pod(0, false), pod(2, false)}, true)
	if n := len(s.replies.pods); n != 2 {
		t.Errorf("cache holds %d pods after one of 3 was removed, want 2", n)
	}
	// A new pod under a gone pod's id (another creation time) is not
	// mistaken for it.
	again := pod(1, true)
	again.CreatedAt = at.Add(time.Hour)
	again.Config.Labels = map[string]string{"app": "other"}
	check([]*sandbox.Status{pod(0, false), again}, false)
}
