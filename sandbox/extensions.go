package sandbox

import (
	"context"
	"fmt"
)

// Extensions let a runtime extension (NRI plugins) take part in a pod's
// lifecycle. Each gets a copy of the pod's record.
type Extensions struct {
	// Run is told of a pod made but not yet visible: an error undoes the
	// pod and fails RunPodSandbox.
	Run func(ctx context.Context, sb *Sandbox) error
	// Stop is told of a ready pod whose containers are stopped, while the
	// pod still stands (its status answers); an error fails StopPodSandbox
	// and the pod stays ready. A pod already stopped is not told again.
	Stop func(ctx context.Context, sb *Sandbox) error
	// Remove is told of a pod about to be removed (stopped, containers gone).
	Remove func(ctx context.Context, sb *Sandbox) error
}

// SetExtensions installs the runtime extensions' hooks.
func (m *Manager) SetExtensions(e Extensions) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ext = e
}

func (m *Manager) extensions() Extensions {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ext
}

// tellRun is the run step between making the pod and recording it.
func (r *podRun) tellRun(ctx context.Context) error {
	hook := r.m.extensions().Run
	if hook == nil {
		return nil
	}
	c := *r.sb
	c.State = StateReady
	if err := hook(ctx, &c); err != nil {
		return fmt.Errorf("run pod sandbox %s: %w", r.sb.ID, err)
	}
	return nil
}

// tellStop tells the extensions of a ready pod stopping.
func (m *Manager) tellStop(ctx context.Context, sb *Sandbox) error {
	hook := m.extensions().Stop
	if hook == nil {
		return nil
	}
	m.mu.Lock()
	c := *sb
	m.mu.Unlock()
	if c.State != StateReady {
		return nil
	}
	if err := hook(ctx, &c); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", sb.ID, err)
	}
	return nil
}

// tellRemove tells the extensions of a pod being removed.
func (m *Manager) tellRemove(ctx context.Context, sb *Sandbox) error {
	hook := m.extensions().Remove
	if hook == nil {
		return nil
	}
	m.mu.Lock()
	c := *sb
	m.mu.Unlock()
	if err := hook(ctx, &c); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	return nil
}
