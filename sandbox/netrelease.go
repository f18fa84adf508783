package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// A stopped pod's network is released (CNI DEL: the veth, the plugins'
// iptables rules, the IP) after StopPodSandbox returned: it is most of a
// stop's time and nothing the caller waits for needs it. The netns stays
// pinned until the DEL ran, so the plugins find the pod's interface. It is
// crash-safe without a record of its own: until the DEL is done the pod's
// record says NotReady with its network attached, which the next start
// releases (recover); once the record is removed, the pin dir and the CNI
// cache entry of an unknown pod are what the next start releases.

// releaseWait bounds how long Close waits for releases still running.
const releaseWait = time.Minute

// maxPendingReleases bounds the releases not yet done. Pods stopped faster
// than their networks are released (a churn on a loaded node) would
// otherwise leave a backlog that grows without end, each with its veth, IP
// and netns pins. Past the bound a stop returns once the backlog is back
// under it. It is well above a burst of stops (a node drained of half the
// kubelet's 110 pods returns each stop without waiting for a DEL); a pod
// range too small for the running pods plus the backlog is covered by
// setupNetwork, which waits for the releases and tries once more when an
// ADD fails while some are pending.
const maxPendingReleases = 64

// releases are the network releases running in the background.
type releases struct {
	mu      sync.Mutex
	running map[string]chan struct{}
	// ports are those of running whose pods have host ports.
	ports map[string]chan struct{}
	wg    sync.WaitGroup
	hold  bool
	// one lets one release run at a time: many at once (a node stopping
	// pods in a row) would only fight the calls still coming for the CPU
	// and the iptables lock.
	one chan struct{}
	// freed is closed (and replaced) whenever a release ends.
	freed chan struct{}
}

func newReleases(hold bool) *releases {
	return &releases{running: map[string]chan struct{}{}, ports: map[string]chan struct{}{}, hold: hold, one: make(chan struct{}, 1), freed: make(chan struct{})}
}

// releaseLater releases sb's network (a copy of the record, as it was
// persisted: NotReady, network attached) in the background, then unpins
// its namespaces and notes the network released in the record, if the pod
// still has one.
func (m *Manager) releaseLater(sb Sandbox) {
	m.rel.mu.Lock()
	if _, ok := m.rel.running[sb.ID]; ok {
		m.rel.mu.Unlock()
		return
	}
	done := make(chan struct{})
	m.rel.running[sb.ID] = done
	if len(sb.Config.PortMappings) > 0 {
		m.rel.ports[sb.ID] = done
	}
	m.rel.wg.Add(1)
	m.rel.mu.Unlock()
	go func() {
		defer m.rel.wg.Done()
		defer m.rel.end(sb.ID, done)
		if m.rel.hold {
			return
		}
		m.rel.one <- struct{}{}
		defer func() { <-m.rel.one }()
		m.release(&sb)
	}()
}

// end notes the release of pod id done, whatever its outcome.
func (r *releases) end(id string, done chan struct{}) {
	r.mu.Lock()
	delete(r.running, id)
	delete(r.ports, id)
	close(r.freed)
	r.freed = make(chan struct{})
	r.mu.Unlock()
	close(done)
}

// release runs one pod's CNI DEL and what follows it.
func (m *Manager) release(sb *Sandbox) {
	start := time.Now()
	if err := m.teardown(sb); err != nil {
		// Left attached in the record (or to the start-up repair of an
		// unknown pod's cache entry): the next start tries again.
		klog.ErrorS(err, "Release pod network", "pod", sb.ID)
		return
	}
	if err := m.unmountAll(sb.ID); err != nil {
		klog.ErrorS(err, "Unpin pod namespaces", "pod", sb.ID)
		return
	}
	_ = os.RemoveAll(filepath.Join(m.nsDir, sb.ID))
	m.mu.Lock()
	_, ok := m.pods[sb.ID]
	m.mu.Unlock()
	if !ok {
		klog.V(4).InfoS("Pod network released", "pod", sb.ID, "took", time.Since(start))
		return
	}
	// The record changes under the pod's lock, so that a removal running
	// now cannot have its deleted record written again.
	l := m.podLock(sb.ID)
	l.Lock()
	defer l.Unlock()
	m.mu.Lock()
	cur, ok := m.pods[sb.ID]
	var c Sandbox
	if ok {
		c = *cur
	} else if m.podLocks[sb.ID] == l {
		delete(m.podLocks, sb.ID)
	}
	m.mu.Unlock()
	if ok && c.NetworkAttached && c.State != StateReady {
		c.NetworkAttached = false
		if err := m.store.put(&c); err != nil {
			klog.ErrorS(err, "Record pod network released", "pod", sb.ID)
			return
		}
		m.mu.Lock()
		if m.pods[sb.ID] == cur {
			*cur = c
		}
		m.mu.Unlock()
	}
	klog.V(4).InfoS("Pod network released", "pod", sb.ID, "took", time.Since(start))
}

// throttleReleases waits, up to ctx's end, while more than
// maxPendingReleases releases are not done: the stops that made the
// backlog wait for it, not a pod's network left unreleased. The caller
// must not hold a pod's lock (a release takes it).
func (m *Manager) throttleReleases(ctx context.Context) {
	for {
		m.rel.mu.Lock()
		n, freed := len(m.rel.running), m.rel.freed
		m.rel.mu.Unlock()
		if n <= maxPendingReleases {
			return
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return
		}
	}
}

// waitPortReleases waits for the releases of pods with host ports that
// are running now (a held release is not waited for).
func (m *Manager) waitPortReleases(ctx context.Context) error {
	if err := waitAll(ctx, m.rel.pending(m.rel.ports)); err != nil {
		return fmt.Errorf("wait for the network release of a pod with host ports: %w", err)
	}
	return nil
}

// pending are the done channels of those releases of set (running or
// ports) not yet done; a held one is done at once.
func (r *releases) pending(set map[string]chan struct{}) []chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	chans := make([]chan struct{}, 0, len(set))
	for _, c := range set {
		chans = append(chans, c)
	}
	return chans
}

// waitAll waits until every channel of chans is closed, or ctx ends.
func waitAll(ctx context.Context, chans []chan struct{}) error {
	for _, c := range chans {
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// afterReleases runs f; when it fails and releases were pending as it
// began (whose addresses, ports or interfaces it may have lacked, even if
// they ended meanwhile), it waits for those releases and runs f once more.
// The second error is the one returned.
func (m *Manager) afterReleases(ctx context.Context, what string, f func() error) error {
	pending := m.rel.pending(m.rel.running)
	err := f()
	if err == nil || len(pending) == 0 {
		return err
	}
	klog.V(2).InfoS("Trying again once the pending network releases are done", "what", what, "pending", len(pending), "err", err)
	if waitAll(ctx, pending) != nil {
		return err
	}
	return f()
}

// waitReleases waits, up to ctx's end, for the releases running.
func (m *Manager) waitReleases(ctx context.Context) {
	done := make(chan struct{})
	go func() { m.rel.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
