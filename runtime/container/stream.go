package container

import "context"

// StreamTarget is what the streaming server (runtime/stream) needs of a
// running container to exec in it or attach to it through its shim.
type StreamTarget struct {
	ID      string
	ShimDir string
	Tty     bool
	// Stdin: created with stdin (attach may write to it); StdinOnce: the
	// first attach closes it when it ends.
	Stdin, StdinOnce bool
}

// StreamTarget finds a running container by id or unique id prefix; one
// that is not running is an error wrapping errdefs.ErrFailedPrecondition.
func (m *Manager) StreamTarget(ctx context.Context, id string) (*StreamTarget, error) {
	rec, err := m.running(ctx, id, "stream")
	if err != nil {
		return nil, err
	}
	return &StreamTarget{ID: rec.ID, ShimDir: rec.ShimDir, Tty: rec.Tty, Stdin: rec.Stdin, StdinOnce: rec.StdinOnce}, nil
}
