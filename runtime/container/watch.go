package container

import (
	"context"
	"errors"
	"time"

	"github.com/berth-dev/berth/errdefs"
)

// watchInterval is how often berthd looks for exits nobody asked about, so
// that an exit is recorded (and its event sent) within about a second even
// when the kubelet does not poll.
const watchInterval = time.Second

// watch refreshes the live records every watchInterval until Close.
func (m *Manager) watch() {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			// Exits of watched containers arrive by inotify (exitwatch.go):
			// a round reads their records only after the kernel dropped
			// events, and otherwise only looks for shims that died.
			var trusted func(*Record) bool
			if m.exits != nil && !m.exits.lost.Swap(false) {
				trusted = func(r *Record) bool { return m.exits.watching(r.ID) }
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			m.refreshAll(ctx, m.store.view(func(r *Record) bool { return r.Status.State != Exited }), trusted)
			cancel()
		}
	}
}

// Close stops the exit watcher.
func (m *Manager) Close() {
	m.closeOnce.Do(func() { close(m.done); m.exits.close(); m.collect.Close() })
}

// refreshAll brings records up to date: exit records for all, the shim
// asked only for the pods whose shim is gone (one pod lookup per pod). The
// records trusted says so (their exits arrive by inotify) are looked at
// only in a pod whose shim is gone. A record removed meanwhile is left out
// of the result.
func (m *Manager) refreshAll(ctx context.Context, recs []*Record, trusted func(*Record) bool) []*Record {
	podLive := map[string]bool{}
	out := recs[:0]
	for _, r := range recs {
		if r.Status.State != Exited {
			live, ok := podLive[r.PodID]
			if !ok {
				p, err := m.opts.Pods.Pod(r.PodID)
				live = err == nil && p.Ready
				podLive[r.PodID] = live
			}
			if live && trusted != nil && trusted(r) {
				out = append(out, r)
				continue
			}
			nr, err := m.refresh(ctx, r, !live)
			if errors.Is(err, errdefs.ErrNotFound) {
				continue
			}
			if err == nil {
				r = nr
			}
		}
		out = append(out, r)
	}
	return out
}
