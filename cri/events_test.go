package cri

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/events"
)

// slowStream is a client that reads nothing until gate closes.
type slowStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent chan struct{}
	gate chan struct{}
}

func (s *slowStream) Context() context.Context { return s.ctx }

func (s *slowStream) Send(*runtimeapi.ContainerEventResponse) error {
	select {
	case s.sent <- struct{}{}:
	default:
	}
	<-s.gate
	return nil
}

// A subscriber that does not keep up neither blocks the publishers nor
// stays subscribed: once its queue overflows, its stream ends with
// ResourceExhausted (the kubelet then relists).
func TestSlowEventSubscriberDropped(t *testing.T) {
	bus := events.New()
	s := NewServer(Options{Events: bus})
	st := &slowStream{ctx: context.Background(), sent: make(chan struct{}, 1), gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.GetContainerEvents(&runtimeapi.GetEventsRequest{}, st) }()
	for bus.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	bus.Publish(events.Event{Kind: events.Created, ID: "first"})
	<-st.sent // the stream is stuck in its first Send
	start := time.Now()
	for range events.DefaultBuffer + 10 {
		bus.Publish(events.Event{Kind: events.Started, ID: "c"})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("publishing past a stuck subscriber took %s", d)
	}
	if bus.Subscribers() != 0 {
		t.Fatal("the stuck subscriber is still subscribed")
	}
	close(st.gate)
	select {
	case err := <-done:
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("stream ended with %v, want ResourceExhausted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dropped stream did not end")
	}
}
