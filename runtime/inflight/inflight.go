// Package inflight runs create operations that outlive their callers.
//
// The kubelet gives every CRI call a deadline (--runtime-request-timeout) and,
// when it passes, retries the same request. Making a pod or a container can
// take longer than that (slow CNI plugins, big images, a loaded node). If the
// work were cancelled with the call, a slow create would never succeed; if it
// went on unnoticed, the retry would make a duplicate or fail with "name
// taken". So a Group runs one operation per key (the request's identity:
// name, uid, attempt) on a context of its own, lets callers of the same key
// that arrive meanwhile wait for it, and keeps a result whose callers all
// gave up for the next caller of that key, once.
package inflight

import (
	"context"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Group is the operations in flight for one kind of request, and their
// unclaimed results.
type Group struct {
	name    string
	timeout time.Duration

	mu  sync.Mutex
	ops map[string]*op
	// unclaimed are results no caller has taken yet: those of ops whose
	// callers all gave up are kept here for the retry.
	unclaimed map[string]string
}

// op is one operation still working.
type op struct {
	done chan struct{}
	id   string
	err  error
}

// New returns a Group whose operations are bounded by timeout once started;
// name is the request's, for the logs.
func New(name string, timeout time.Duration) *Group {
	return &Group{name: name, timeout: timeout, ops: map[string]*op{}, unclaimed: map[string]string{}}
}

// Do returns the id made by fn for key. While an fn of key runs, Do waits for
// it rather than starting another, and every caller waiting gets its result.
// A successful result that no caller took (they all gave up) is handed to
// the next Do of key, once, if valid(id) says it still stands (the thing may
// have been removed meanwhile); valid is called without the Group's lock
// held. Otherwise fn runs on a context detached from ctx and bounded by the
// Group's timeout: when ctx ends first, Do returns ctx.Err() and fn goes on.
// Errors are not kept: the next Do runs fn again. (A Do that comes just as
// an fn ends, before its waiters took the result, gets it too: it is one
// more caller of the same request.)
func (g *Group) Do(ctx context.Context, key string, valid func(id string) bool, fn func(context.Context) (string, error)) (string, error) {
	g.mu.Lock()
	for {
		if o, ok := g.ops[key]; ok {
			g.mu.Unlock()
			return g.wait(ctx, key, o)
		}
		id, ok := g.unclaimed[key]
		if !ok {
			break
		}
		delete(g.unclaimed, key)
		g.mu.Unlock()
		if valid(id) {
			return id, nil
		}
		// Gone since: look again, another caller may have started meanwhile.
		g.mu.Lock()
	}
	o := &op{done: make(chan struct{})}
	g.ops[key] = o
	g.mu.Unlock()

	go func() {
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
		defer cancel()
		id, err := fn(octx)
		g.mu.Lock()
		o.id, o.err = id, err
		delete(g.ops, key)
		// Kept until a waiter takes it: were it kept only when no waiter
		// is left, a waiter giving up just as it ends could keep it late,
		// over the result of a newer op of the key.
		if err == nil {
			g.unclaimed[key] = id
		}
		g.mu.Unlock()
		close(o.done)
	}()
	return g.wait(ctx, key, o)
}

// wait returns o's result, taking it from the unclaimed ones; a caller
// that gives up leaves it there for the retry.
func (g *Group) wait(ctx context.Context, key string, o *op) (string, error) {
	select {
	case <-o.done:
		if o.err == nil {
			g.mu.Lock()
			if g.unclaimed[key] == o.id {
				delete(g.unclaimed, key)
			}
			g.mu.Unlock()
		}
		return o.id, o.err
	case <-ctx.Done():
		klog.InfoS("Caller gave up; the operation goes on for its retry", "request", g.name, "key", key)
		return "", ctx.Err()
	}
}

// Forget drops key's unclaimed result if it is id: the thing was removed,
// and its retry, if any ever comes, must not get it.
func (g *Group) Forget(key, id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unclaimed[key] == id {
		delete(g.unclaimed, key)
	}
}
