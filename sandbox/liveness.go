package sandbox

import (
	"sync"
	"time"
)

// A ready pod is live while its shim, its pause process and its netns pin
// are: three reads of /proc or statfs per pod. PodSandboxStatus checks them
// each time; ListPodSandbox, which the kubelet calls every second for
// every pod, reads what a round once a second found instead (and checks a
// pod not seen yet), so that its cost is the reply's.

// liveCheckInterval is how often the ready pods are checked for List.
const liveCheckInterval = time.Second

type liveness struct {
	mu sync.Mutex
	// of is the last check of each ready pod (by its record: a record
	// replaced by a change of state is checked anew).
	of   map[*Sandbox]*Status
	done chan struct{}
	once sync.Once
}

func newLiveness() *liveness {
	return &liveness{of: map[*Sandbox]*Status{}, done: make(chan struct{})}
}

// cachedStatus is liveStatus of sb from the last round, or checked now.
func (m *Manager) cachedStatus(sb *Sandbox, c *Sandbox) *Status {
	if c.State != StateReady {
		return &Status{Sandbox: c}
	}
	m.live.mu.Lock()
	st, ok := m.live.of[sb]
	m.live.mu.Unlock()
	if ok && st.Sandbox.State == c.State {
		return &Status{Sandbox: c, Ready: st.Ready, Reason: st.Reason}
	}
	st = liveStatus(c)
	m.live.mu.Lock()
	m.live.of[sb] = st
	m.live.mu.Unlock()
	return st
}

// checkLive rechecks the ready pods every liveCheckInterval until Close.
func (m *Manager) checkLive() {
	t := time.NewTicker(liveCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-m.live.done:
			return
		case <-t.C:
		}
		m.mu.Lock()
		type pair struct{ sb, c *Sandbox }
		var ready []pair
		for _, sb := range m.pods {
			if sb.State == StateReady {
				c := *sb
				ready = append(ready, pair{sb, &c})
			}
		}
		m.mu.Unlock()
		of := make(map[*Sandbox]*Status, len(ready))
		for _, p := range ready {
			of[p.sb] = liveStatus(p.c)
		}
		m.live.mu.Lock()
		m.live.of = of
		m.live.mu.Unlock()
	}
}
