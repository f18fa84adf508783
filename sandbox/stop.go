package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/runtime/shim"
)

// Stop stops the pod's containers, releases its network, ends its shim and
// pause process and unpins its namespaces. It is idempotent: stopping an
// unknown (e.g. removed) pod succeeds, as the CRI asks.
func (m *Manager) Stop(ctx context.Context, id string) error {
	sb, err := m.lookup(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l := m.podLock(sb.ID)
	l.Lock()
	err = m.stop(ctx, sb)
	l.Unlock()
	if err == nil {
		m.throttleReleases(ctx)
	}
	return err
}

// stop works on the live record; the caller holds the pod's lock (or is
// the start-up repair).
func (m *Manager) stop(ctx context.Context, sb *Sandbox) error {
	m.mu.Lock()
	hook := m.hooks.StopContainers
	m.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, sb.ID); err != nil {
			return fmt.Errorf("stop containers of pod %s: %w", sb.ID, err)
		}
	}
	if err := m.tellStop(ctx, sb); err != nil {
		return err
	}
	// Edit a copy; the record changes only once persisted. The network is
	// released after the stop returns (netrelease.go), the netns pinned
	// until then; the record keeps it attached until it is released.
	c := *sb
	start := time.Now()
	later := m.opts.Network != nil && c.NetworkAttached
	if later && m.rel.hold {
		klog.V(4).InfoS("Network release held", "pod", sb.ID)
	}
	m.stopShim(&c)
	shimTook := time.Since(start)
	defer func() {
		klog.V(4).InfoS("Pod sandbox stop steps", "pod", sb.ID, "networkLater", later, "shim", shimTook, "total", time.Since(start))
	}()
	if later {
		if err := m.unmountPodDir(sb.ID); err != nil {
			return fmt.Errorf("stop pod %s: %w", sb.ID, err)
		}
	} else {
		if err := m.unmountAll(sb.ID); err != nil {
			return fmt.Errorf("stop pod %s: %w", sb.ID, err)
		}
		_ = os.RemoveAll(filepath.Join(m.nsDir, sb.ID))
	}
	c.State = StateNotReady
	if c.State != sb.State || c.NetworkAttached != sb.NetworkAttached {
		if err := m.store.put(&c); err != nil {
			return err
		}
	}
	was := sb.State
	m.mu.Lock()
	*sb = c
	m.mu.Unlock()
	if later {
		m.releaseLater(c)
	}
	if was == StateReady {
		m.publish(&c, events.Stopped)
	}
	return nil
}

// Remove stops the pod if needed and removes all of it: containers, cgroup,
// files and record. Removing an unknown pod succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	if err := m.remove(ctx, id); err != nil {
		return err
	}
	m.throttleReleases(ctx)
	return nil
}

func (m *Manager) remove(ctx context.Context, id string) error {
	sb, err := m.lookup(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l := m.podLock(sb.ID)
	l.Lock()
	defer l.Unlock()
	m.mu.Lock()
	_, still := m.pods[sb.ID]
	hook := m.hooks.RemoveContainers
	m.mu.Unlock()
	if !still {
		return nil
	}
	start := time.Now()
	if err := m.stop(ctx, sb); err != nil {
		return err
	}
	if hook != nil {
		if err := hook(ctx, sb.ID); err != nil {
			return fmt.Errorf("remove containers of pod %s: %w", sb.ID, err)
		}
	}
	if err := m.tellRemove(ctx, sb); err != nil {
		return err
	}
	containersTook := time.Since(start)
	if err := m.opts.Cgroups.DeletePod(sb.Cgroup); err != nil {
		return fmt.Errorf("remove pod %s: %w", sb.ID, err)
	}
	cgroupTook := time.Since(start)
	if err := os.RemoveAll(sb.StateDir); err != nil {
		return fmt.Errorf("remove pod %s: %w", sb.ID, err)
	}
	dirsTook := time.Since(start)
	if err := m.store.delete(sb.ID); err != nil {
		return err
	}
	klog.V(4).InfoS("Pod sandbox remove steps", "pod", sb.ID, "containers", containersTook, "cgroup", cgroupTook, "dirs", dirsTook, "total", time.Since(start))
	m.mu.Lock()
	delete(m.pods, sb.ID)
	key := sb.Config.Metadata.key()
	if m.names[key] == sb.ID {
		delete(m.names, key)
	}
	delete(m.podLocks, sb.ID)
	m.mu.Unlock()
	m.runs.Forget(key, sb.ID)
	m.publish(sb, events.Deleted)
	klog.V(2).InfoS("Pod sandbox removed", "pod", sb.ID)
	return nil
}

// killPid SIGKILLs a process if it is still the one we started, and waits
// for it to go.
func killPid(pid int, startTime uint64) {
	if !shim.Alive(pid, startTime) {
		return
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	if !shim.WaitGone(pid, startTime, 5*time.Second) {
		klog.ErrorS(nil, "Process did not exit after SIGKILL", "pid", pid)
	}
}
