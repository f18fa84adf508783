package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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

// An ADD that fails while releases are pending is tried once more after
// they are done (a small range may lack only the addresses stopped pods
// still hold); without pending releases, or failing again, the error
// stands.
func TestAfterReleases(t *testing.T) {
	m := &Manager{rel: newReleases(false)}
	calls := 0
	fail := errors.New("no IP addresses available")
	err := m.afterReleases(context.Background(), "test", func() error { calls++; return fail })
	if !errors.Is(err, fail) || calls != 1 {
		t.Fatalf("nothing pending: %v after %d calls, want the error after 1", err, calls)
	}

	done := make(chan struct{})
	m.rel.running["stopped"] = done
	var released atomic.Bool
	result := make(chan error, 1)
	calls = 0
	go func() {
		result <- m.afterReleases(context.Background(), "test", func() error {
			calls++
			if !released.Load() {
				return fail
			}
			return nil
		})
	}()
	select {
	case err := <-result:
		t.Fatalf("returned %v before the pending release was done", err)
	case <-time.After(200 * time.Millisecond):
	}
	released.Store(true)
	m.rel.end("stopped", done)
	select {
	case err := <-result:
		if err != nil || calls != 2 {
			t.Fatalf("after the release: %v after %d calls, want success after 2", err, calls)
		}
	case <-time.After(time.Minute): // a bound on a hang
		t.Fatal("still waiting after the release was done")
	}

	// A caller that gives up gets the first error; a second failure is
	// not tried a third time.
	m.rel.running["held"] = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	if err := m.afterReleases(ctx, "test", func() error { calls++; return fail }); !errors.Is(err, fail) || calls != 1 {
		t.Fatalf("canceled: %v after %d calls", err, calls)
	}
	delete(m.rel.running, "held")
	other := make(chan struct{})
	m.rel.running["other"] = other
	close(other)
	calls = 0
	if err := m.afterReleases(context.Background(), "test", func() error { calls++; return fail }); !errors.Is(err, fail) || calls != 2 {
		t.Fatalf("failing again: %v after %d calls, want the error after 2", err, calls)
	}
}
