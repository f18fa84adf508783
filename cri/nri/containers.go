package nri

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	api "github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/sandbox"
)

// createContainer is the container manager's adjust hook: plugins see the
// container as berth would make it and their adjustment is applied to the
// spec, before anything of it is visible. Their updates of other
// containers and evictions follow.
func (n *NRI) createContainer(ctx context.Context, rec *container.Record, s *specs.Spec) (func(), error) {
	c := containerOf(rec, s)
	since := time.Now()
	resp, err := n.a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: n.pod(rec.PodID), Container: c})
	if err != nil {
		return nil, n.failed("CreateContainer", err, since)
	}
	if err := n.adjust(rec, s, resp.GetAdjust(), since); err != nil {
		return nil, err
	}
	n.track(rec, containerOf(rec, s))
	undo := func() {
		// The create failed after plugins took it in: they hear of its end.
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n.removed(dctx, rec)
	}
	n.apply(ctx, "CreateContainer", resp.GetUpdate(), resp.GetEvict())
	return undo, nil
}

// ContainerCreated tells plugins of a container made.
func (n *NRI) ContainerCreated(ctx context.Context, id string) {
	n.notify(ctx, id, "PostCreateContainer", func(p *api.PodSandbox, c *api.Container) error {
		return n.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: p, Container: c})
	})
}

// ContainerStarting tells plugins of a container about to start; an error fails the start.
func (n *NRI) ContainerStarting(ctx context.Context, id string) error {
	return n.send(ctx, id, "StartContainer", func(p *api.PodSandbox, c *api.Container) error {
		return n.a.StartContainer(ctx, &api.StartContainerRequest{Pod: p, Container: c})
	})
}

// ContainerStarted tells plugins of a container started.
func (n *NRI) ContainerStarted(ctx context.Context, id string) {
	n.notify(ctx, id, "PostStartContainer", func(p *api.PodSandbox, c *api.Container) error {
		return n.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: p, Container: c})
	})
}

// send hands plugins the event op of container id, built by call from the
// container as it now is; nothing is sent for a container gone (or when
// NRI is off). The error is the plugins' refusal, with its gRPC kind.
func (n *NRI) send(ctx context.Context, id, op string, call func(*api.PodSandbox, *api.Container) error) error {
	if n == nil {
		return nil
	}
	rec, s := n.lookup(ctx, id)
	if rec == nil {
		return nil
	}
	since := time.Now()
	return n.failed(op, call(n.pod(rec.PodID), containerOf(rec, s)), since)
}

// notify is send for the events after the fact, which nothing can undo:
// a plugin's failure is only logged.
func (n *NRI) notify(ctx context.Context, id, op string, call func(*api.PodSandbox, *api.Container) error) {
	if err := n.send(ctx, id, op, call); err != nil {
		klog.ErrorS(err, "NRI plugin call failed", "container", id)
	}
}

// UpdatingContainer lets plugins change the resources a container update asks for;
// it returns what to apply.
func (n *NRI) UpdatingContainer(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if n == nil {
		return r, nil
	}
	rec, s := n.lookup(ctx, id)
	if rec == nil {
		return r, nil
	}
	since := time.Now()
	resp, err := n.a.UpdateContainer(ctx, &api.UpdateContainerRequest{
		Pod: n.pod(rec.PodID), Container: containerOf(rec, s), LinuxResources: nriResources(r),
	})
	if err != nil {
		return nil, n.failed("UpdateContainer", err, since)
	}
	var own []*api.ContainerUpdate
	var others []*api.ContainerUpdate
	for _, u := range resp.GetUpdate() {
		if u.GetContainerId() == rec.ID {
			own = append(own, u)
		} else {
			others = append(others, u)
		}
	}
	out := r
	for _, u := range own {
		if res := u.GetLinux().GetResources(); res != nil {
			out = merged(out, criResources(res))
		}
	}
	n.apply(ctx, "UpdateContainer", others, resp.GetEvict())
	return out, nil
}

// merged is base with what upd sets.
func merged(base, upd *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	if base == nil {
		return upd
	}
	out := proto.Clone(base).(*runtimeapi.LinuxContainerResources)
	if upd.CpuPeriod != 0 {
		out.CpuPeriod = upd.CpuPeriod
	}
	if upd.CpuQuota != 0 {
		out.CpuQuota = upd.CpuQuota
	}
	if upd.CpuShares != 0 {
		out.CpuShares = upd.CpuShares
	}
	if upd.MemoryLimitInBytes != 0 {
		out.MemoryLimitInBytes = upd.MemoryLimitInBytes
	}
	if upd.MemorySwapLimitInBytes != 0 {
		out.MemorySwapLimitInBytes = upd.MemorySwapLimitInBytes
	}
	if upd.CpusetCpus != "" {
		out.CpusetCpus = upd.CpusetCpus
	}
	if upd.CpusetMems != "" {
		out.CpusetMems = upd.CpusetMems
	}
	if len(upd.HugepageLimits) > 0 {
		out.HugepageLimits = upd.HugepageLimits
	}
	if len(upd.Unified) > 0 {
		u := map[string]string{}
		for k, v := range base.Unified {
			u[k] = v
		}
		for k, v := range upd.Unified {
			u[k] = v
		}
		out.Unified = u
	}
	return out
}

// ContainerUpdated tells plugins of a container updated.
func (n *NRI) ContainerUpdated(ctx context.Context, id string) {
	n.notify(ctx, id, "PostUpdateContainer", func(p *api.PodSandbox, c *api.Container) error {
		return n.a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: p, Container: c})
	})
}

// ContainerStopped tells plugins of a container stopped (once).
func (n *NRI) ContainerStopped(ctx context.Context, id string) {
	if n == nil {
		return
	}
	if rec, _ := n.lookup(ctx, id); rec != nil {
		n.stopped(ctx, rec)
	}
}

// ContainerRemoved tells plugins of a container removed (once, after its stop).
func (n *NRI) ContainerRemoved(ctx context.Context, rec *container.Record) {
	if n == nil || rec == nil {
		return
	}
	n.removed(ctx, rec)
}

func (n *NRI) stopped(ctx context.Context, rec *container.Record) {
	t := n.track(rec, nil)
	t.mu.Lock()
	defer t.mu.Unlock()
	n.stoppedLocked(ctx, t, rec)
}

func (n *NRI) stoppedLocked(ctx context.Context, t *tracked, rec *container.Record) {
	if t.stopped {
		return
	}
	t.stopped = true
	c := t.c
	c.State = api.ContainerState_CONTAINER_STOPPED
	if rec.Status.State == container.Exited {
		c.ExitCode, c.FinishedAt = rec.Status.ExitCode, rec.Status.FinishedAt.UnixNano()
	}
	since := time.Now()
	resp, err := n.a.StopContainer(ctx, &api.StopContainerRequest{Pod: n.pod(t.pod), Container: c})
	if err != nil {
		n.logFailed("StopContainer", rec.ID, err, since)
		return
	}
	n.apply(ctx, "StopContainer", resp.GetUpdate(), nil)
}

func (n *NRI) removed(ctx context.Context, rec *container.Record) {
	t := n.track(rec, nil)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed {
		return
	}
	n.stoppedLocked(ctx, t, rec)
	t.removed = true
	since := time.Now()
	err := n.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: n.pod(t.pod), Container: t.c})
	n.logFailed("RemoveContainer", rec.ID, err, since)
	n.forget(rec.ID)
}

// watch tells plugins of the exits and removals that came by other ways
// than the CRI calls that tell them (a command that ended, a pod's stop).
func (n *NRI) watch() {
	for {
		select {
		case <-n.done:
			return
		case e, ok := <-n.sub.C():
			if !ok {
				klog.ErrorS(n.sub.Err(), "NRI lost the event stream; exits will reach plugins at the next CRI call")
				return
			}
			if e.Sandbox {
				continue
			}
			rec, _ := e.Snapshot.(*container.Record)
			if rec == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			switch e.Kind {
			case events.Stopped:
				n.stopped(ctx, rec)
			case events.Deleted:
				n.removed(ctx, rec)
			}
			cancel()
		}
	}
}

// lookup finds a container's record and spec; nil when gone.
func (n *NRI) lookup(ctx context.Context, id string) (*container.Record, *specs.Spec) {
	rec, err := n.deps.Containers.Status(ctx, id)
	if err != nil {
		return nil, nil
	}
	s, err := n.deps.Containers.Spec(rec)
	if err != nil {
		return rec, nil
	}
	return rec, s
}

func (n *NRI) logFailed(op, id string, err error, since time.Time) {
	if err != nil {
		klog.ErrorS(n.failed(op, err, since), "NRI plugin call failed", "container", id)
	}
}

// synchronize hands a connecting plugin every pod and container, and
// carries out the updates it asks for.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	var pods []*api.PodSandbox
	for _, st := range n.deps.Pods.List(sandbox.Filter{}) {
		pods = append(pods, podOf(st.Sandbox))
	}
	var ctrs []*api.Container
	for _, rec := range n.deps.Containers.List(ctx, container.Filter{}) {
		s, _ := n.deps.Containers.Spec(rec)
		c := containerOf(rec, s)
		ctrs = append(ctrs, c)
		t := n.track(rec, c)
		t.mu.Lock()
		if rec.Status.State == container.Exited {
			t.stopped = true
		}
		t.mu.Unlock()
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return fmt.Errorf("synchronize: %w", err)
	}
	if failed := n.update(ctx, updates); len(failed) > 0 {
		return fmt.Errorf("synchronize: %d container update(s) failed", len(failed))
	}
	return nil
}

// updateContainers carries out a plugin's unsolicited updates; it returns
// those that failed.
func (n *NRI) updateContainers(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return n.update(ctx, updates), nil
}

func (n *NRI) update(ctx context.Context, updates []*api.ContainerUpdate) []*api.ContainerUpdate {
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		r := criResources(u.GetLinux().GetResources())
		if r == nil {
			continue
		}
		err := n.checkResources(r)
		if err == nil {
			err = n.deps.Containers.UpdateResources(ctx, u.GetContainerId(), r)
		}
		if err != nil {
			klog.ErrorS(err, "NRI container update failed", "container", u.GetContainerId(), "ignoreFailure", u.GetIgnoreFailure())
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
		}
	}
	return failed
}

// apply carries out the updates and evictions a plugin's answer to op
// asked for.
func (n *NRI) apply(ctx context.Context, op string, updates []*api.ContainerUpdate, evict []*api.ContainerEviction) {
	if failed := n.update(ctx, updates); len(failed) > 0 {
		klog.ErrorS(nil, "NRI updates of other containers failed", "request", op, "failed", len(failed))
	}
	for _, e := range evict {
		klog.InfoS("NRI plugin evicts container", "container", e.GetContainerId(), "reason", e.GetReason())
		if err := n.deps.Containers.Stop(ctx, e.GetContainerId(), 0); err != nil {
			klog.ErrorS(err, "NRI eviction failed", "container", e.GetContainerId())
		}
	}
}

func (n *NRI) checkResources(r *runtimeapi.LinuxContainerResources) error {
	if n.deps.CheckResources == nil {
		return nil
	}
	return n.deps.CheckResources("NRI update", r)
}
