package imageservice

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/errdefs"
)

// progress counts what a pull receives; watch cancels the pull when too
// little arrives for too long.
type progress struct {
	bytes atomic.Int64
	steps atomic.Int64

	mu      sync.Mutex
	leaders []*progress // pulls fetching layers this one waits for
}

func (p *progress) add(n int) { p.bytes.Add(int64(n)) }
func (p *progress) step()     { p.steps.Add(1) }

func (p *progress) follow(l *progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Contains(p.leaders, l) {
		p.leaders = append(p.leaders, l)
	}
}

// mark only grows while the pull, or a pull it waits for, receives data.
func (p *progress) mark() int64 {
	m := p.bytes.Load() + p.steps.Load()*minProgress
	p.mu.Lock()
	for _, l := range p.leaders {
		m += l.bytes.Load() + l.steps.Load()*minProgress
	}
	p.mu.Unlock()
	return m
}

func (p *progress) watch(ctx context.Context, timeout time.Duration, cancel context.CancelCauseFunc) func() {
	done := make(chan struct{})
	go func() {
		tick := max(timeout/8, 10*time.Millisecond)
		t := time.NewTicker(tick)
		defer t.Stop()
		last, lastAt := p.mark(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				if m := p.mark(); m-last >= minProgress {
					last, lastAt = m, now
				} else if now.Sub(lastAt) >= timeout {
					cancel(fmt.Errorf("%w: pull made no progress for %v", errdefs.ErrUnavailable, timeout))
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
