package collector

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.waiters = append(f.waiters, waiter{f.now.Add(d), ch})
	return ch
}

func (f *fakeClock) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// advance moves the clock and wakes the waits that are due.
func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(f.now) {
			w.ch <- f.now
		} else {
			kept = append(kept, w)
		}
	}
	f.waiters = kept
}

// item is a fake pod: its usage is what the test sets.
type item struct {
	id   string
	born int64
}

type world struct {
	mu     sync.Mutex
	items  []item
	usage  map[string]uint64
	reads  map[string]int // reads of each item
	block  chan struct{}  // when set, Read waits on it
	forgot map[string]bool
}

type sample struct {
	id    string
	usage uint64
	at    time.Time
}

func newWorld(ids ...string) *world {
	w := &world{usage: map[string]uint64{}, reads: map[string]int{}}
	for _, id := range ids {
		w.add(id, 1)
	}
	return w
}

func (w *world) add(id string, born int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.items = append(w.items, item{id, born})
	w.usage[id] = 100
}

func (w *world) remove(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, it := range w.items {
		if it.id == id {
			w.items = append(w.items[:i], w.items[i+1:]...)
			return
		}
	}
}

// blockReads makes the reads that start from now on wait until the
// returned channel is closed.
func (w *world) blockReads() chan struct{} {
	block := make(chan struct{})
	w.mu.Lock()
	w.block = block
	w.mu.Unlock()
	return block
}

// unblockNewReads lets the reads that start from now on run (those
// already waiting still wait for their channel).
func (w *world) unblockNewReads() {
	w.mu.Lock()
	w.block = nil
	w.mu.Unlock()
}

func (w *world) set(id string, u uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.usage[id] = u
}

func (w *world) all() []item {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]item(nil), w.items...)
}

func (w *world) forgotten() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.forgot
}

func (w *world) readsOf(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reads[id]
}

func newCollector(t *testing.T, w *world, clk *fakeClock, period time.Duration) *Collector[item, sample] {
	c := New(Options[item, sample]{
		Period: period,
		Key:    func(it item) Key { return Key{ID: it.id, Born: time.Unix(it.born, 0)} },
		All:    w.all,
		Read: func(its []item) []sample {
			w.mu.Lock()
			block := w.block
			w.mu.Unlock()
			if block != nil {
				<-block
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			out := make([]sample, len(its))
			for i, it := range its {
				w.reads[it.id]++
				out[i] = sample{it.id, w.usage[it.id], clk.Now()}
			}
			return out
		},
		Forget: func(live map[string]bool) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.forgot = live
		},
		Clock: clk,
	})
	t.Cleanup(c.Close)
	return c
}

// waitFor polls cond: the collector's goroutine runs on its own time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func usages(ss []sample) string {
	out := ""
	for _, s := range ss {
		out += fmt.Sprintf("%s=%d ", s.id, s.usage)
	}
	return out
}

// tick lets the collector's wait end and its round finish.
func tick(t *testing.T, c *Collector[item, sample], clk *fakeClock, d time.Duration) {
	t.Helper()
	waitFor(t, "the collector to wait", func() bool { return clk.waiting() == 1 })
	n := c.Rounds()
	clk.advance(d)
	waitFor(t, "a round", func() bool { return c.Rounds() > n })
}

func TestZeroPeriodReadsEveryCall(t *testing.T) {
	w, clk := newWorld("a", "b"), newFakeClock()
	c := newCollector(t, w, clk, 0)
	for range 3 {
		c.Get(w.all())
	}
	if w.readsOf("a") != 3 || c.Len() != 0 || clk.waiting() != 0 {
		t.Fatalf("period 0: %d reads of a, %d samples kept, %d waits; want 3, 0, 0", w.readsOf("a"), c.Len(), clk.waiting())
	}
}

func TestGetAnswersFromTheRounds(t *testing.T) {
	w, clk := newWorld("a", "b"), newFakeClock()
	c := newCollector(t, w, clk, 10*time.Second)

	// The first call reads; its reads are the samples until the round.
	got := c.Get(w.all())
	if usages(got) != "a=100 b=100 " || w.readsOf("a") != 1 {
		t.Fatalf("first Get: %s, %d reads", usages(got), w.readsOf("a"))
	}
	w.set("a", 200)
	if got := c.Get(w.all()); usages(got) != "a=100 b=100 " || w.readsOf("a") != 1 {
		t.Fatalf("second Get read again: %s, %d reads", usages(got), w.readsOf("a"))
	}
	// The round reads every item, and Get answers with its values and
	// their time.
	tick(t, c, clk, 10*time.Second)
	got = c.Get(w.all())
	if usages(got) != "a=200 b=100 " || w.readsOf("a") != 2 || !got[0].at.Equal(clk.Now()) {
		t.Fatalf("after a round: %s at %v (now %v), %d reads", usages(got), got[0].at, clk.Now(), w.readsOf("a"))
	}
	if f := w.forgotten(); !f["a"] || !f["b"] || len(f) != 2 {
		t.Errorf("round told Forget of %v", f)
	}
}

func TestNewAndRemovedItems(t *testing.T) {
	w, clk := newWorld("a", "b"), newFakeClock()
	c := newCollector(t, w, clk, 10*time.Second)
	c.Get(w.all())

	// An item made since the last round is read in the call, alone.
	w.add("c", 1)
	got := c.Get(w.all())
	if usages(got) != "a=100 b=100 c=100 " || w.readsOf("a") != 1 || w.readsOf("c") != 1 {
		t.Fatalf("new item: %s, reads a %d c %d", usages(got), w.readsOf("a"), w.readsOf("c"))
	}
	if c.Get(w.all()); w.readsOf("c") != 1 {
		t.Fatalf("new item read again: %d", w.readsOf("c"))
	}
	// A removed item's sample goes with the next round.
	w.remove("b")
	tick(t, c, clk, 10*time.Second)
	if n := c.Len(); n != 2 {
		t.Fatalf("after b's removal and a round: %d samples, want 2", n)
	}
	if f := w.forgotten(); f["b"] {
		t.Errorf("Forget told b is live: %v", f)
	}
}

func TestRecreatedIDGetsNoOldSample(t *testing.T) {
	w, clk := newWorld("a"), newFakeClock()
	c := newCollector(t, w, clk, 10*time.Second)
	c.Get(w.all())
	w.remove("a")
	w.add("a", 2)
	w.set("a", 7)
	got := c.Get(w.all())
	if usages(got) != "a=7 " || w.readsOf("a") != 2 {
		t.Fatalf("re-made a got %s (%d reads), want its own read", usages(got), w.readsOf("a"))
	}
}

// heldRound is a collector of item "a" at a 10 s period, asked once, whose
// next round's read waits until block is closed.
func heldRound(t *testing.T) (w *world, clk *fakeClock, c *Collector[item, sample], block chan struct{}) {
	t.Helper()
	w, clk = newWorld("a"), newFakeClock()
	c = newCollector(t, w, clk, 10*time.Second)
	c.Get(w.all())
	block = w.blockReads()
	waitFor(t, "the collector to wait", func() bool { return clk.waiting() == 1 })
	return w, clk, c, block
}

func TestStaleSamplesAreReadAgain(t *testing.T) {
	// A round that cannot finish: the sample of the first call ages.
	w, clk, c, block := heldRound(t)
	clk.advance(10 * time.Second)
	clk.advance(10 * time.Second)
	w.set("a", 300)
	w.unblockNewReads()
	// Two periods old: the call reads, not waiting for the round.
	if got := c.Get(w.all()); usages(got) != "a=300 " {
		t.Fatalf("stale sample served: %s", usages(got))
	}
	close(block)
	waitFor(t, "the blocked round", func() bool { return c.Rounds() == 1 })
	// The call's read was newer than the round's: it stays the sample.
	if got := c.Get(w.all()); usages(got) != "a=300 " || !got[0].at.Equal(clk.Now()) {
		t.Fatalf("round's older read replaced the newer: %s", usages(got))
	}
}

func TestLongRoundDoesNotPileUp(t *testing.T) {
	w, clk, c, block := heldRound(t)
	clk.advance(10 * time.Second)
	// The round is stuck for three periods: nothing else waits or reads.
	for range 3 {
		clk.advance(10 * time.Second)
	}
	if n := clk.waiting(); n != 0 {
		t.Fatalf("%d waits while a round runs", n)
	}
	w.unblockNewReads()
	close(block)
	waitFor(t, "the long round", func() bool { return c.Rounds() == 1 })
	// The next round is a whole period later, not at once.
	waitFor(t, "the collector to wait", func() bool { return clk.waiting() == 1 })
	clk.advance(9 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if n := c.Rounds(); n != 1 {
		t.Fatalf("%d rounds 9 s after a long one", n)
	}
	clk.advance(time.Second)
	waitFor(t, "the next round", func() bool { return c.Rounds() == 2 })
}

func TestIdleCollectorStops(t *testing.T) {
	w, clk := newWorld("a", "b"), newFakeClock()
	c := newCollector(t, w, clk, 10*time.Second)
	c.Get(w.all())
	rounds := int(Idle / (10 * time.Second))
	for range rounds - 1 {
		tick(t, c, clk, 10*time.Second)
	}
	// Idle long enough: the next wake stops it and drops the samples.
	waitFor(t, "the collector to wait", func() bool { return clk.waiting() == 1 })
	clk.advance(10 * time.Second)
	waitFor(t, "the collector to stop", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.running
	})
	reads := w.readsOf("a")
	if c.Len() != 0 || reads != rounds || c.Rounds() != rounds-1 {
		t.Fatalf("stopped with %d samples, %d reads, %d rounds; want 0, %d, %d", c.Len(), reads, c.Rounds(), rounds, rounds-1)
	}
	clk.advance(time.Hour)
	if w.readsOf("a") != reads || clk.waiting() != 0 {
		t.Fatalf("an idle collector read or waits")
	}
	// Asked again: the call reads live and the rounds start again.
	w.set("a", 5)
	if got := c.Get(w.all()); usages(got) != "a=5 b=100 " {
		t.Fatalf("after the stop: %s", usages(got))
	}
	tick(t, c, clk, 10*time.Second)
}

func TestCloseEndsTheRounds(t *testing.T) {
	w, clk := newWorld("a"), newFakeClock()
	c := newCollector(t, w, clk, 10*time.Second)
	c.Get(w.all())
	waitFor(t, "the collector to wait", func() bool { return clk.waiting() == 1 })
	c.Close()
	c.Close()
	if c.Len() != 0 {
		t.Fatalf("%d samples after Close", c.Len())
	}
	// Closed: calls still answer, by reading.
	if got := c.Get(w.all()); usages(got) != "a=100 " || c.Len() != 0 || w.readsOf("a") != 2 {
		t.Fatalf("Get after Close: %s, %d kept, %d reads", usages(got), c.Len(), w.readsOf("a"))
	}
}

// Many callers and the rounds at once, for the race detector.
func TestConcurrentGets(t *testing.T) {
	w, clk := newWorld("a", "b", "c"), newFakeClock()
	c := newCollector(t, w, clk, 10*time.Second)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := fmt.Sprintf("n%d-%d", g, i)
				w.add(id, 1)
				if got := c.Get(w.all()); len(got) < 4 {
					t.Errorf("Get: %d samples", len(got))
					return
				}
				w.remove(id)
			}
		}()
	}
	for range 20 {
		clk.advance(5 * time.Second)
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
}
