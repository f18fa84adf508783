package main

import (
	"encoding/json"
	"fmt"
	"log"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/safefile"
	"github.com/berth-dev/berth/runtime/shim"
)

// reap waits for the container's init to end and records the end.
func (c *container) reap(exited <-chan unix.WaitStatus) {
	ws := <-exited
	finished := time.Now().UTC()
	// They would hold the namespaces of a container that is over.
	c.execFiles.Close()
	// The OOM counter goes with the cgroup: read it first.
	oom := c.proc.OOMKilled()
	// The container is over when its init ends; in a PID namespace shared
	// with the pod its other processes would outlive it.
	if cg := c.proc.Cgroup(); cg != nil {
		if pids, err := cg.Pids(); err == nil && len(pids) > 0 {
			if err := cg.KillAll(); err != nil {
				log.Printf("container %s: kill leftover processes: %v", c.id, err)
			}
		}
	}
	c.drain()
	if c.log != nil {
		_ = c.log.Close()
	}
	// A start under way decides StartedAt.
	c.startMu.Lock()
	defer c.startMu.Unlock()
	containers.mu.Lock()
	rec := shim.ExitRecord{Pid: c.state.Pid, StartedAt: c.state.StartedAt, FinishedAt: finished, ExitCode: exitCode(ws), OOMKilled: oom}
	containers.mu.Unlock()
	// The record is on disk before anyone learns of the exit: berthd may
	// read it as soon as the state says exited.
	if err := writeExitRecord(c.stateDir, rec); err != nil {
		log.Printf("container %s: %v", c.id, err)
	}
	containers.mu.Lock()
	c.state.Status = shim.StatusExited
	c.state.FinishedAt = finished
	c.state.ExitCode = rec.ExitCode
	c.state.OOMKilled = oom
	containers.mu.Unlock()
	close(c.done)
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// writeExitRecord writes ExitFile so that it survives a crash whole or not
// at all; a symlink at its name is replaced, never followed.
func writeExitRecord(dir string, rec shim.ExitRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	d, err := safefile.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("write exit record: %w", err)
	}
	defer d.Close()
	if err := d.WriteFileAtomic(shim.ExitFile, data, 0o644); err != nil {
		return fmt.Errorf("write exit record: %w", err)
	}
	return nil
}
