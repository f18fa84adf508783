// Package collector keeps the newest usage samples of a runtime's items
// (pods, containers) and re-reads them in the background while someone
// asks for them, as the kubelet's cAdvisor housekeeping does: a stats list
// then costs building its reply, not a read of every item's cgroup files.
package collector

import (
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Idle is how long the collector keeps reading after the last Get: the
// kubelet asks every 10 s or so, and a node nobody monitors pays nothing.
const Idle = 2 * time.Minute

// Key tells an item apart from one made later with the same id.
type Key struct {
	ID   string
	Born time.Time
}

// Clock is time for the collector (tests drive a fake one).
type Clock interface {
	Now() time.Time
	After(time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Collector of items I whose samples are V.
type Options[I, V any] struct {
	// Name is what the logs call the items ("pods").
	Name string
	// Period is how often the items are read while asked for; 0: never in
	// the background, every Get reads.
	Period time.Duration
	// Key is an item's identity.
	Key func(I) Key
	// All lists the items a background round reads.
	All func() []I
	// Read reads the items' samples, one for each, in order.
	Read func([]I) []V
	// Forget, if set, is told after each round which items it read, so
	// that state kept for the others (CPU samples) can go.
	Forget func(live map[string]bool)
	// Clock is nil for the real one.
	Clock Clock
	// Idle is nil for the package's Idle.
	Idle time.Duration
}

type entry[V any] struct {
	key Key
	at  time.Time // when the read began
	v   V
}

// Collector answers Get from samples at most two periods old (see Get)
// and keeps them that fresh in the background while Get is called.
type Collector[I, V any] struct {
	o    Options[I, V]
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	m       map[string]entry[V]
	asked   time.Time
	running bool
	closed  bool
	rounds  int
}

// New makes a Collector; it reads nothing until the first Get.
func New[I, V any](o Options[I, V]) *Collector[I, V] {
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Idle <= 0 {
		o.Idle = Idle
	}
	return &Collector[I, V]{o: o, done: make(chan struct{}), m: map[string]entry[V]{}}
}

// maxAge bounds the age of a sample Get returns. A round begins every
// period, so samples are normally less than one old; the second period
// lets a round in progress finish without the calls reading live.
func (c *Collector[I, V]) maxAge() time.Duration { return 2 * c.o.Period }

// Get returns the items' samples: the collected one of an item that has
// one young enough with the item's identity, a read made now for the
// others (items made since the last round, or every item when the
// collector was idle), which then become their samples. It marks the
// samples as in demand, starting the background rounds.
func (c *Collector[I, V]) Get(items []I) []V {
	if c.o.Period <= 0 {
		return c.o.Read(items)
	}
	now := c.o.Clock.Now()
	out := make([]V, len(items))
	var miss []int
	c.mu.Lock()
	c.asked = now
	if !c.running && !c.closed {
		klog.V(4).InfoS("Stats collector starting", "of", c.o.Name, "period", c.o.Period)
		c.running = true
		c.wg.Add(1)
		go c.loop()
	}
	for i, it := range items {
		k := c.o.Key(it)
		if e, ok := c.m[k.ID]; ok && sameKey(e.key, k) && now.Sub(e.at) < c.maxAge() {
			out[i] = e.v
		} else {
			miss = append(miss, i)
		}
	}
	c.mu.Unlock()
	if len(miss) == 0 {
		return out
	}
	read := make([]I, len(miss))
	for j, i := range miss {
		read[j] = items[i]
	}
	at := c.o.Clock.Now()
	vs := c.o.Read(read)
	c.mu.Lock()
	defer c.mu.Unlock()
	for j, i := range miss {
		out[i] = vs[j]
		if c.running {
			c.put(c.m, entry[V]{key: c.o.Key(read[j]), at: at, v: vs[j]})
		}
	}
	return out
}

func sameKey(a, b Key) bool { return a.ID == b.ID && a.Born.Equal(b.Born) }

// put stores e in m unless m has a newer sample of the same item.
func (c *Collector[I, V]) put(m map[string]entry[V], e entry[V]) {
	if old, ok := m[e.key.ID]; ok && sameKey(old.key, e.key) && old.at.After(e.at) {
		return
	}
	m[e.key.ID] = e
}

// loop runs a round every period while Get is called, one at a time: a
// round longer than the period is followed by a whole period's wait, not
// by the next round at once.
func (c *Collector[I, V]) loop() {
	defer c.wg.Done()
	wait := c.o.Period
	for {
		select {
		case <-c.done:
			return
		case <-c.o.Clock.After(wait):
		}
		start := c.o.Clock.Now()
		c.mu.Lock()
		if start.Sub(c.asked) >= c.o.Idle {
			// Nobody asks: drop the samples (their items may be gone
			// by the next Get) and stop until asked again.
			c.running = false
			c.m = map[string]entry[V]{}
			c.mu.Unlock()
			klog.V(4).InfoS("Stats collector stopping: no stats asked for", "of", c.o.Name, "idle", c.o.Idle)
			return
		}
		c.mu.Unlock()
		c.round(start)
		took := c.o.Clock.Now().Sub(start)
		wait = c.o.Period - took
		if wait <= 0 {
			klog.V(2).InfoS("Stats round took longer than its period", "of", c.o.Name, "took", took, "period", c.o.Period)
			wait = c.o.Period
		}
	}
}

// round reads every item; the samples of the items not among them go,
// except those a Get read since the round began (items made meanwhile).
func (c *Collector[I, V]) round(start time.Time) {
	items := c.o.All()
	vs := c.o.Read(items)
	live := make(map[string]bool, len(items))
	c.mu.Lock()
	m := make(map[string]entry[V], len(items))
	for _, e := range c.m {
		if e.at.After(start) {
			m[e.key.ID] = e
		}
	}
	for i, it := range items {
		k := c.o.Key(it)
		live[k.ID] = true
		c.put(m, entry[V]{key: k, at: start, v: vs[i]})
	}
	if c.running {
		c.m = m
	}
	c.mu.Unlock()
	if c.o.Forget != nil {
		c.o.Forget(live)
	}
	c.mu.Lock()
	c.rounds++
	c.mu.Unlock()
}

// Close stops the background rounds and waits for the one running.
func (c *Collector[I, V]) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.running = false
	c.m = map[string]entry[V]{}
	c.mu.Unlock()
	close(c.done)
	c.wg.Wait()
}

// Rounds is how many background rounds have run (for tests and logs).
func (c *Collector[I, V]) Rounds() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rounds
}

// Len is how many samples are kept.
func (c *Collector[I, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
