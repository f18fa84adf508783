package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/shim"
)

// The ops on a created container: start, state, signals, delete, and the
// shutdown that ends them all.

func handleStart(s *server, raw json.RawMessage) (any, error) {
	a, c, err := containerOf[shim.IDArgs](raw)
	if err != nil {
		return nil, err
	}
	c.startMu.Lock()
	defer c.startMu.Unlock()
	containers.mu.Lock()
	if c.state.Status != shim.StatusCreated {
		st := c.state.Status
		containers.mu.Unlock()
		return nil, fmt.Errorf("container %s is %s, not created: %w", a.ID, st, errdefs.ErrFailedPrecondition)
	}
	c.state.StartedAt = time.Now().UTC()
	containers.mu.Unlock()
	if c.restore != nil {
		err = c.restoreProcess(s)
	} else {
		err = c.proc.Start()
	}
	containers.mu.Lock()
	defer containers.mu.Unlock()
	if err != nil {
		c.state.StartedAt = time.Time{}
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	if c.state.Status == shim.StatusCreated {
		c.state.Status = shim.StatusRunning
	}
	return c.state, nil
}

func handleState(_ *server, raw json.RawMessage) (any, error) {
	_, c, err := containerOf[shim.IDArgs](raw)
	if err != nil {
		return nil, err
	}
	return c.snapshot(), nil
}

func handleKill(_ *server, raw json.RawMessage) (any, error) {
	a, c, err := containerOf[shim.KillArgs](raw)
	if err != nil {
		return nil, err
	}
	if a.Signal <= 0 || a.Signal > 64 {
		return nil, fmt.Errorf("bad signal %d: %w", a.Signal, errdefs.ErrInvalidArgument)
	}
	if c.snapshot().Status == shim.StatusExited {
		return struct{}{}, nil
	}
	if err := c.kill(syscall.Signal(a.Signal), a.All); err != nil {
		return nil, fmt.Errorf("container %s: %w", a.ID, err)
	}
	return struct{}{}, nil
}

// kill signals the init, or every process of the container's cgroup.
func (c *container) kill(sig syscall.Signal, all bool) error {
	p := c.process()
	if p == nil {
		return nil // not restored yet: no process
	}
	cg := p.Cgroup()
	if !all || cg == nil {
		if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		return nil
	}
	if sig == unix.SIGKILL {
		// Frozen meanwhile: nothing forks past it.
		return cg.KillAll()
	}
	pids, err := cg.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d: %w", pid, err)
		}
	}
	return nil
}

// deleteWait bounds the wait for a killed container's reap.
const deleteWait = 10 * time.Second

func handleDelete(_ *server, raw json.RawMessage) (any, error) {
	var a shim.IDArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	containers.mu.Lock()
	c := containers.byID[a.ID]
	created := containers.pending[a.ID]
	containers.mu.Unlock()
	if created != nil {
		// berthd undoing a create its caller gave up on: the delete
		// applies to what the create makes.
		select {
		case <-created:
		case <-time.After(deleteWait):
			return nil, fmt.Errorf("container %s is still being created: %w", a.ID, errdefs.ErrFailedPrecondition)
		}
		containers.mu.Lock()
		c = containers.byID[a.ID]
		containers.mu.Unlock()
	}
	if c == nil {
		return struct{}{}, nil
	}
	if err := c.destroy(); err != nil {
		return nil, fmt.Errorf("delete container %s: %w", a.ID, err)
	}
	containers.mu.Lock()
	if containers.byID[a.ID] == c {
		delete(containers.byID, a.ID)
	}
	containers.mu.Unlock()
	return struct{}{}, nil
}

// destroy kills the container if it runs, waits for its reap and removes
// its cgroup (berthd made it; the shim removes it once the exit is
// recorded, as the OOM count goes with it). Safe to repeat.
func (c *container) destroy() error {
	c.deleteMu.Lock()
	defer c.deleteMu.Unlock()
	c.dropRestore()
	if err := c.stop(deleteWait); err != nil {
		return err
	}
	if p := c.process(); p != nil {
		if err := p.Destroy(); err != nil {
			return err
		}
	}
	if c.stdin != nil {
		c.stdin.Close()
	}
	if c.log != nil {
		_ = c.log.Close()
	}
	return nil
}

// stop kills every process of the container and waits until the exit is
// recorded.
func (c *container) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	if err := c.kill(unix.SIGKILL, true); err != nil {
		return err
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("process %d did not end within %v after SIGKILL", c.snapshot().Pid, timeout)
	}
}

// stopContainers is the shutdown hook: every container is killed and its
// end recorded before the shim goes; their cgroups go too, since no one
// else would remove them.
func stopContainers(*server) {
	containers.mu.Lock()
	containers.closed = true
	containers.mu.Unlock()
	containers.creating.Wait()
	containers.mu.Lock()
	all := make([]*container, 0, len(containers.byID))
	for _, c := range containers.byID {
		if c != nil {
			all = append(all, c)
		}
	}
	containers.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.destroy(); err != nil {
				log.Printf("shutdown: container %s: %v", c.id, err)
			}
		}()
	}
	wg.Wait()
}
