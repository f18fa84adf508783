package sandbox

import "github.com/berth-dev/berth/runtime/events"

// publish sends a pod's lifecycle events, each with its own copy of the
// record, to the events bus of the options (if any).
func (m *Manager) publish(sb *Sandbox, kinds ...events.Kind) {
	if m.opts.Events == nil {
		return
	}
	for _, k := range kinds {
		c := *sb
		m.opts.Events.Publish(events.Event{Kind: k, Sandbox: true, ID: sb.ID, PodID: sb.ID, Snapshot: &c})
	}
}
