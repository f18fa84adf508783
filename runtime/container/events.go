package container

import (
	"github.com/berth-dev/berth/runtime/events"
)

// changed tells the store's subscriber about a change; prev is nil for an
// added record and cur nil for a deleted one. It runs under the store's
// lock, which orders the changes, so it must not block.
func (s *Store) changed(prev, cur *Record) {
	if s.notify != nil {
		s.notify(prev, cur)
	}
}

// publishTo turns record changes into lifecycle events on bus: created on
// add, started when a record first becomes running, stopped when it becomes
// exited (a stop, or an exit a refresh noticed), deleted on delete.
func publishTo(bus *events.Bus) func(prev, cur *Record) {
	if bus == nil {
		return nil
	}
	return func(prev, cur *Record) {
		ev := func(k events.Kind, r *Record) {
			bus.Publish(events.Event{Kind: k, ID: r.ID, PodID: r.PodID, Snapshot: r.clone()})
		}
		switch {
		case prev == nil:
			ev(events.Created, cur)
			// A record added already running or exited (not made by berthd's
			// create) still passes through every state in order.
			if cur.Status.State == Running || cur.Status.State == Exited {
				ev(events.Started, cur)
			}
			if cur.Status.State == Exited {
				ev(events.Stopped, cur)
			}
		case cur == nil:
			ev(events.Deleted, prev)
		case prev.Status.State != cur.Status.State:
			if cur.Status.State == Running {
				ev(events.Started, cur)
			}
			if cur.Status.State == Exited {
				ev(events.Stopped, cur)
			}
		}
	}
}
