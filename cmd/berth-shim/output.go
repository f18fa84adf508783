package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/shim"
)

// A container's output: copied into its CRI log (and to attached clients)
// until the process and every holder of its pipes are gone.

// copyOutput copies one stream into the log until the stream ends. A log
// that cannot be written (a reopen failed) loses lines, not the stream:
// copying goes on, so the container never blocks on a full pipe and the
// log resumes once a later reopen succeeds.
func (c *container) copyOutput(stream string, r *os.File) {
	defer c.copiers.Done()
	// Attached clients (stream.go) get a copy of what the log gets.
	src := &readErr{r: attachTee(c, stream, r)}
	for c.log != nil && src.err == nil {
		if err := c.log.Copy(stream, src, 0); err == nil {
			return
		}
	}
	if c.handoff.Load() {
		// berth-mon takes over; unread output waits in the pipe.
		return
	}
	_, _ = io.Copy(io.Discard, src)
}

// readErr remembers its reader's error, to tell the stream's end from a
// failed write of the log.
type readErr struct {
	r   io.Reader
	err error
}

func (x *readErr) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	if err != nil {
		x.err = err
	}
	return n, err
}

// drain waits for the output copiers; past drainTimeout (a descendant that
// left the cgroup still holds a pipe) their reads are cut short.
func (c *container) drain() {
	copied := make(chan struct{})
	go func() { c.copiers.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(drainTimeout):
		for _, r := range c.outputs {
			_ = r.SetReadDeadline(time.Unix(1, 0))
		}
		<-copied
	}
	for _, r := range c.outputs {
		if r != c.stdin {
			r.Close()
		}
	}
}

func handleReopenLog(_ *server, raw json.RawMessage) (any, error) {
	a, c, err := containerOf[shim.IDArgs](raw)
	if err != nil {
		return nil, err
	}
	if c.log == nil {
		return nil, fmt.Errorf("container %s has no log: %w", a.ID, errdefs.ErrFailedPrecondition)
	}
	if c.snapshot().Status != shim.StatusRunning {
		return nil, fmt.Errorf("container %s is not running: %w", a.ID, errdefs.ErrFailedPrecondition)
	}
	// A symlink put at the log path since is not followed: the current
	// file is kept, and the kubelet learns why.
	if err := c.log.Reopen(); err != nil {
		return nil, fmt.Errorf("container %s: %w", a.ID, withCode(err, errdefs.ErrFailedPrecondition))
	}
	return struct{}{}, nil
}

// watchLive is watch for a pid that was just created and not reaped yet.
