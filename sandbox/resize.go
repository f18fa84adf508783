package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
)

// UpdateResources applies a running pod's new resources and overhead (the
// kubelet's in-place pod resize) to its cgroup and records them, so that
// PodSandboxStatus(verbose) and a restarted berthd show them. A nil one
// keeps what the pod had. The limits the pod had and the request leaves
// out (a memory limit dropped to none) stay in the cgroup: the kubelet
// never resizes a pod across QoS classes, which is what that would be.
func (m *Manager) UpdateResources(ctx context.Context, id string, res, overhead *Resources) error {
	sb, err := m.lookup(id)
	if err != nil {
		return err
	}
	l := m.podLock(sb.ID)
	l.Lock()
	defer l.Unlock()
	if sb.State != StateReady {
		return fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	c := *sb
	if res != nil {
		c.Config.Resources = res
	}
	if overhead != nil {
		c.Config.Overhead = overhead
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.opts.Cgroups.UpdatePod(c.Cgroup, linuxResources(c.Config.Resources, c.Config.Overhead)); err != nil {
		// A limit the kernel refused may follow others it took: the old
		// ones go back, so that the cgroup matches the record.
		if rerr := m.opts.Cgroups.UpdatePod(sb.Cgroup, linuxResources(sb.Config.Resources, sb.Config.Overhead)); rerr != nil {
			klog.ErrorS(rerr, "Restore pod limits after a failed resize", "pod", sb.ID)
		}
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("resize pod %s: its cgroup is gone: %w: %w", sb.ID, errdefs.ErrFailedPrecondition, err)
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("resize pod %s: the memory limit is below what the pod uses: %w: %w", sb.ID, errdefs.ErrFailedPrecondition, err)
		}
		return fmt.Errorf("resize pod %s: %w", sb.ID, err)
	}
	if err := m.store.put(&c); err != nil {
		// Unrecorded limits would be lost at the next restart's report:
		// the cgroup keeps agreeing with the record.
		if rerr := m.opts.Cgroups.UpdatePod(sb.Cgroup, linuxResources(sb.Config.Resources, sb.Config.Overhead)); rerr != nil {
			klog.ErrorS(rerr, "Restore pod limits after a failed record", "pod", sb.ID)
		}
		return fmt.Errorf("record resources of pod %s: %w", sb.ID, err)
	}
	m.mu.Lock()
	*sb = c
	m.mu.Unlock()
	klog.V(2).InfoS("Pod sandbox resized", "pod", sb.ID, "resources", c.Config.Resources, "overhead", c.Config.Overhead)
	return nil
}
