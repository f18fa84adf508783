// Package events is berthd's in-process event bus: the sandbox and
// container managers publish lifecycle events, and each subscriber (a
// GetContainerEvents stream) receives all of them in publish order.
//
// Publishing never blocks the runtime. Every subscriber has its own bounded
// queue; a subscriber that lets its queue fill up is dropped (its channel
// closed, Err returns ErrSlow) rather than slowing the publisher or missing
// events silently, so the kubelet's evented PLEG relists instead of
// trusting a stream with holes.
package events

import (
	"errors"
	"sync"
	"time"
)

// Kind is what happened.
type Kind int

const (
	Created Kind = iota
	Started
	Stopped
	Deleted
)

func (k Kind) String() string {
	switch k {
	case Created:
		return "created"
	case Started:
		return "started"
	case Stopped:
		return "stopped"
	case Deleted:
		return "deleted"
	}
	return "unknown"
}

// Event is one lifecycle change of a container or a pod sandbox.
type Event struct {
	Kind Kind
	// Sandbox: the event is about the pod sandbox PodID itself (ID == PodID).
	Sandbox bool
	ID      string
	PodID   string
	Time    time.Time
	// Snapshot is the publisher's record as it was right after the change
	// (a copy the subscriber may keep): *container.Record or
	// *sandbox.Sandbox. A deleted object cannot be looked up any more, so
	// its status comes from here.
	Snapshot any
}

// ErrSlow is why a subscriber was dropped: its queue was full.
var ErrSlow = errors.New("event subscriber too slow: its queue overflowed and it was dropped")

// DefaultBuffer is a subscriber's queue length when Subscribe is given none.
const DefaultBuffer = 4096

// Bus fans events out to subscribers. The zero value is not usable; a nil
// *Bus accepts publishes and drops them.
type Bus struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// New returns an empty bus.
func New() *Bus { return &Bus{subs: map[*Subscription]struct{}{}} }

// Subscription is one subscriber's queue.
type Subscription struct {
	bus *Bus
	ch  chan Event
	// err is set (under bus.mu) before ch is closed.
	err error
}

// C delivers the events in publish order; it is closed when the
// subscription ends (Close, or dropped as too slow: see Err).
func (s *Subscription) C() <-chan Event { return s.ch }

// Err is why C was closed by the bus (ErrSlow), or nil.
func (s *Subscription) Err() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.err
}

// Close ends the subscription; it is idempotent.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		close(s.ch)
	}
}

// Subscribe starts a subscription that receives every event published from
// now on; buffer <= 0 means DefaultBuffer.
func (b *Bus) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	s := &Subscription{bus: b, ch: make(chan Event, buffer)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Subscribers is how many subscriptions are live.
func (b *Bus) Subscribers() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Publish queues e for every subscriber without blocking. Publishers that
// must keep the order of their events publish under the lock that orders
// the changes themselves; Publish keeps the order it is called in.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			s.err = ErrSlow
			delete(b.subs, s)
			close(s.ch)
		}
	}
}
