package sandbox

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A stop waits while more network releases are pending than the bound, and
// returns as soon as one ends: pods stopped faster than their networks are
// released (the 30-minute churn on a loaded node) would otherwise pile up
// veths, IPs and netns pins without end.
func TestThrottleReleases(t *testing.T) {
	m := &Manager{rel: newReleases(false)}
	dones := map[string]chan struct{}{}
	for i := range maxPendingReleases + 1 {
		id := fmt.Sprint("pod", i)
		dones[id] = make(chan struct{})
		m.rel.running[id] = dones[id]
	}
	returned := make(chan struct{})
	go func() {
		m.throttleReleases(context.Background())
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatalf("returned with %d releases pending, bound %d", maxPendingReleases+1, maxPendingReleases)
	case <-time.After(200 * time.Millisecond):
	}
	m.rel.end("pod0", dones["pod0"])
	select {
	case <-returned:
	case <-time.After(time.Minute): // a bound on a hang
		t.Fatal("still waiting with the backlog at the bound")
	}

	// Under the bound it does not wait; a caller that gives up is let go.
	m.throttleReleases(context.Background())
	m.rel.running["extra"] = make(chan struct{})
	m.rel.running["extra2"] = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.throttleReleases(ctx)
}
