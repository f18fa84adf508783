package container

import (
	"context"
	"sync"

	"k8s.io/klog/v2"
)

// recoverWorkers is how many shims berthd asks at once at start-up. Each
// answer is a round trip to another process (each shim its own scheduling
// wait on a busy node), and berthd serves no call until every live
// container is refreshed: asked one by one, 250 pods took ~2 s of the
// restart on a loaded 2-core node.
const recoverWorkers = 16

// refreshAtStart refreshes the live records from their shims (or exit
// records), recoverWorkers at a time. Each record is its own: no two
// workers touch the same container, and the store serialises its writes.
func (m *Manager) refreshAtStart(ctx context.Context, live []*Record) {
	next := make(chan *Record)
	var wg sync.WaitGroup
	for w := 0; w < min(recoverWorkers, len(live)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				if _, err := m.refresh(ctx, r, true); err != nil {
					klog.ErrorS(err, "Recover container", "container", r.ID)
				}
			}
		}()
	}
	for _, r := range live {
		next <- r
	}
	close(next)
	wg.Wait()
}
