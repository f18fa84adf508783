package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AdjustFunc lets a runtime extension (NRI plugins) change a container's
// spec after berth generated it and before anything of the container is
// visible or started. An error fails the create, which is then undone;
// undo (when not nil) runs if a later step of the create fails.
type AdjustFunc func(ctx context.Context, rec *Record, s *specs.Spec) (undo func(), err error)

// SetAdjust installs the runtime extensions' spec hook (before serving).
func (m *Manager) SetAdjust(f AdjustFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adjust = f
}

func (m *Manager) adjustFunc() AdjustFunc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.adjust
}

// runAdjust applies the extensions' changes to s and brings what rec shows
// of the spec (resources) in line with them.
func (m *Manager) runAdjust(ctx context.Context, rec *Record, s *specs.Spec, u *undo) error {
	f := m.adjustFunc()
	if f == nil {
		return nil
	}
	undoAdjust, err := f(ctx, rec, s)
	if err != nil {
		return err
	}
	if undoAdjust != nil {
		u.add(undoAdjust)
	}
	if s.Linux != nil && s.Linux.Resources != nil {
		rec.Resources = resourcesOfSpec(s, rec.Resources)
	}
	return nil
}

// resourcesOfSpec is what a container's status reports of its spec's
// resources; prev keeps what the spec has no room for.
func resourcesOfSpec(s *specs.Spec, prev *Resources) *Resources {
	r := &Resources{}
	if prev != nil {
		*r = *prev
	}
	lr := s.Linux.Resources
	if c := lr.CPU; c != nil {
		if c.Period != nil {
			r.CPUPeriod = int64(*c.Period)
		}
		if c.Quota != nil {
			r.CPUQuota = *c.Quota
		}
		if c.Shares != nil {
			r.CPUShares = int64(*c.Shares)
		}
		r.CpusetCpus, r.CpusetMems = c.Cpus, c.Mems
	}
	if mem := lr.Memory; mem != nil {
		if mem.Limit != nil {
			r.MemoryLimit = *mem.Limit
		}
		if mem.Swap != nil {
			r.MemorySwapLimit = *mem.Swap
		}
	}
	if s.Process != nil && s.Process.OOMScoreAdj != nil {
		r.OOMScoreAdj = int64(*s.Process.OOMScoreAdj)
	}
	if len(lr.Unified) > 0 {
		r.Unified = cloneMap(lr.Unified)
	}
	return r
}

// Spec reads the OCI spec a container was created with.
func (m *Manager) Spec(rec *Record) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(rec.StateDir, specFile))
	if err != nil {
		return nil, fmt.Errorf("read spec of %s: %w", rec.ID, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode spec of %s: %w", rec.ID, err)
	}
	return &s, nil
}
