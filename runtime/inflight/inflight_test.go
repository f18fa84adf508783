package inflight

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// TestMain quiets klog: every caller giving up logs a line.
func TestMain(m *testing.M) {
	fs := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func always(string) bool { return true }

// gated is an fn that counts its runs and returns its id once released.
type gated struct {
	runs    atomic.Int32
	started chan struct{}
	release chan struct{}
	ended   chan struct{}
	id      string
	err     error
	sawCtx  chan error // the fn's ctx.Err() when it ends
}

func newGated(id string, err error) *gated {
	return &gated{
		started: make(chan struct{}, 100), release: make(chan struct{}), ended: make(chan struct{}, 100),
		id: id, err: err, sawCtx: make(chan error, 100),
	}
}

func (f *gated) fn(ctx context.Context) (string, error) {
	f.runs.Add(1)
	f.started <- struct{}{}
	<-f.release
	f.sawCtx <- ctx.Err()
	defer func() { f.ended <- struct{}{} }()
	return f.id, f.err
}

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func unclaimed(g *Group, key string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id, ok := g.unclaimed[key]
	return id, ok
}

func mustNotRun(t *testing.T) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		t.Error("fn ran, want the kept result")
		return "", errors.New("ran")
	}
}

type result struct {
	id  string
	err error
}

func do(g *Group, ctx context.Context, key string, fn func(context.Context) (string, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		id, err := g.Do(ctx, key, always, fn)
		ch <- result{id, err}
	}()
	return ch
}

func get(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Do did not return")
		return result{}
	}
}

func TestWaitersShareOneRun(t *testing.T) {
	g := New("test", time.Minute)
	f := newGated("id1", nil)
	first := do(g, context.Background(), "k", f.fn)
	recv(t, f.started, "fn start")
	var rest []<-chan result
	for range 5 {
		rest = append(rest, do(g, context.Background(), "k", f.fn))
	}
	// Let the waiters register before the result is there.
	time.Sleep(20 * time.Millisecond)
	close(f.release)
	for _, ch := range append(rest, first) {
		if r := get(t, ch); r.id != "id1" || r.err != nil {
			t.Errorf("Do = %q, %v; want id1", r.id, r.err)
		}
	}
	if n := f.runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
	if id, ok := unclaimed(g, "k"); ok {
		t.Errorf("result %s kept though callers got it", id)
	}
	// Done and taken: the next Do of the key runs again.
	if id, err := g.Do(context.Background(), "k", always, func(context.Context) (string, error) { return "id2", nil }); id != "id2" || err != nil {
		t.Errorf("next Do = %q, %v; want a new run", id, err)
	}
}

func TestKeysRunApart(t *testing.T) {
	g := New("test", time.Minute)
	a, b := newGated("a", nil), newGated("b", nil)
	ra := do(g, context.Background(), "ka", a.fn)
	rb := do(g, context.Background(), "kb", b.fn)
	recv(t, a.started, "fn of ka")
	recv(t, b.started, "fn of kb") // both run at once
	close(b.release)
	if r := get(t, rb); r.id != "b" {
		t.Errorf("kb = %v", r)
	}
	close(a.release)
	if r := get(t, ra); r.id != "a" {
		t.Errorf("ka = %v", r)
	}
}

func TestGivenUpResultGoesToRetryOnce(t *testing.T) {
	g := New("test", time.Minute)
	f := newGated("id1", nil)
	ctx, cancel := context.WithCancel(context.Background())
	first := do(g, ctx, "k", f.fn)
	recv(t, f.started, "fn start")
	cancel()
	if r := get(t, first); r.id != "" || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Do = %q, %v; want context.Canceled", r.id, r.err)
	}
	close(f.release)
	recv(t, f.ended, "fn end")
	if err := <-f.sawCtx; err != nil {
		t.Errorf("fn's context ended with its caller's: %v", err)
	}
	// The op has finished (fn returned); wait for the Group to record it.
	waitFor(t, func() bool { _, ok := unclaimed(g, "k"); return ok })

	var validated string
	id, err := g.Do(context.Background(), "k", func(id string) bool { validated = id; return true }, mustNotRun(t))
	if id != "id1" || err != nil || validated != "id1" {
		t.Errorf("retry = %q, %v (validated %q); want the kept id1", id, err, validated)
	}
	// Claimed once: the one after runs fn.
	id, err = g.Do(context.Background(), "k", always, func(context.Context) (string, error) { return "", errors.New("dup") })
	if id != "" || err == nil || err.Error() != "dup" {
		t.Errorf("third Do = %q, %v; want fn's error", id, err)
	}
}

func TestRetryJoinsRunningOp(t *testing.T) {
	g := New("test", time.Minute)
	f := newGated("id1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	first := do(g, ctx, "k", f.fn)
	recv(t, f.started, "fn start")
	if r := get(t, first); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("first Do: %v, want DeadlineExceeded", r.err)
	}
	retry := do(g, context.Background(), "k", f.fn)
	time.Sleep(20 * time.Millisecond)
	close(f.release)
	if r := get(t, retry); r.id != "id1" || r.err != nil {
		t.Errorf("retry = %v; want id1 of the first run", r)
	}
	if n := f.runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
	if id, ok := unclaimed(g, "k"); ok {
		t.Errorf("result %s kept though the retry got it", id)
	}
}

func TestWaiterThatGotItBeatsOneThatGaveUp(t *testing.T) {
	g := New("test", time.Minute)
	f := newGated("id1", nil)
	stay := do(g, context.Background(), "k", f.fn)
	recv(t, f.started, "fn start")
	ctx, cancel := context.WithCancel(context.Background())
	leave := do(g, ctx, "k", f.fn)
	time.Sleep(20 * time.Millisecond)
	cancel()
	if r := get(t, leave); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("leaving Do: %v", r.err)
	}
	close(f.release)
	if r := get(t, stay); r.id != "id1" {
		t.Fatalf("staying Do: %v", r)
	}
	if id, ok := unclaimed(g, "k"); ok {
		t.Errorf("result %s kept though a waiter got it", id)
	}
}

func TestErrorsAreNotKept(t *testing.T) {
	g := New("test", time.Minute)
	boom := errors.New("boom")
	f := newGated("", boom)
	ctx, cancel := context.WithCancel(context.Background())
	first := do(g, ctx, "k", f.fn)
	recv(t, f.started, "fn start")
	waiter := do(g, context.Background(), "k", f.fn)
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-first
	close(f.release)
	if r := get(t, waiter); !errors.Is(r.err, boom) || r.id != "" {
		t.Errorf("waiter = %v; want boom", r)
	}
	recv(t, f.ended, "fn end")
	if id, ok := unclaimed(g, "k"); ok {
		t.Errorf("failed op kept %q", id)
	}
	// Nobody waiting when it fails: nothing kept either.
	f2 := newGated("", boom)
	ctx2, cancel2 := context.WithCancel(context.Background())
	r2 := do(g, ctx2, "k", f2.fn)
	recv(t, f2.started, "fn start")
	cancel2()
	<-r2
	close(f2.release)
	recv(t, f2.ended, "fn end")
	time.Sleep(10 * time.Millisecond)
	if id, err := g.Do(context.Background(), "k", always, func(context.Context) (string, error) { return "fresh", nil }); id != "fresh" || err != nil {
		t.Errorf("Do after a failure nobody saw = %q, %v; want a new run", id, err)
	}
}

func TestStaleResultRunsAgain(t *testing.T) {
	g := New("test", time.Minute)
	g.unclaimed["k"] = "gone"
	id, err := g.Do(context.Background(), "k", func(string) bool { return false }, func(context.Context) (string, error) { return "new", nil })
	if id != "new" || err != nil {
		t.Errorf("Do = %q, %v; want a new run past the removed result", id, err)
	}
	if id, ok := unclaimed(g, "k"); ok {
		t.Errorf("stale result %q still kept", id)
	}
}

func TestForget(t *testing.T) {
	g := New("test", time.Minute)
	g.unclaimed["k"] = "id1"
	g.Forget("k", "other") // a later thing of the same key: not ours to drop
	if id, _ := unclaimed(g, "k"); id != "id1" {
		t.Fatalf("Forget of another id dropped %q", id)
	}
	g.Forget("k", "id1")
	if id, ok := unclaimed(g, "k"); ok {
		t.Errorf("Forget kept %q", id)
	}
	if id, _ := g.Do(context.Background(), "k", always, func(context.Context) (string, error) { return "new", nil }); id != "new" {
		t.Errorf("Do after Forget = %q, want a new run", id)
	}
}

func TestRunIsBoundedByTimeout(t *testing.T) {
	g := New("test", 20*time.Millisecond)
	_, err := g.Do(context.Background(), "k", always, func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Do = %v, want the op's own DeadlineExceeded", err)
	}
}

// TestNoResultLost: callers giving up at random while runs finish; every
// id a run made reached a caller or is the one kept for the retry.
func TestNoResultLost(t *testing.T) {
	g := New("test", time.Minute)
	var (
		mu       sync.Mutex
		made     = map[string]bool{}
		returned = map[string]bool{}
		n        atomic.Int32
	)
	fn := func(ctx context.Context) (string, error) {
		id := fmt.Sprint("id", n.Add(1))
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		mu.Lock()
		made[id] = true
		mu.Unlock()
		return id, nil
	}
	var callers sync.WaitGroup
	for i := range 400 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(400))*time.Microsecond)
			defer cancel()
			id, err := g.Do(ctx, fmt.Sprint("k", i%4), always, fn)
			if err == nil {
				mu.Lock()
				returned[id] = true
				mu.Unlock()
			} else if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Do: %v", err)
			}
		}()
	}
	callers.Wait()
	// An op leaves the Group after its fn returned.
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.ops) == 0 })
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range g.unclaimed {
		if returned[id] {
			t.Errorf("%s was returned and is kept for a retry too", id)
		}
	}
	for id := range made {
		if returned[id] {
			continue
		}
		kept := false
		for k, u := range g.unclaimed {
			if u == id {
				kept = true
				delete(g.unclaimed, k)
			}
		}
		if !kept {
			t.Errorf("%s was made, never returned and not kept", id)
		}
	}
	if len(made) == 0 {
		t.Fatal("no run finished")
	}
	t.Logf("%d runs, %d ids returned", len(made), len(returned))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
