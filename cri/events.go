package cri

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/sandbox"
)

// exitPoll is how often a live events stream looks for containers that
// exited by themselves: the record changes (and the stopped event goes out)
// when a list reads their exit record.
const exitPoll = time.Second

var eventKinds = map[events.Kind]runtimeapi.ContainerEventType{
	events.Created: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	events.Started: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	events.Stopped: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	events.Deleted: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

// GetContainerEvents streams every container and pod sandbox event from the
// moment of the call, in order. A subscriber that falls behind by more than
// its queue (events.DefaultBuffer) is ended with ResourceExhausted: the
// kubelet then relists, which beats a stream with holes or a runtime
// waiting on a reader.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	bus := s.opts.Events
	if bus == nil {
		return fmt.Errorf("container events: %w", errdefs.ErrUnimplemented)
	}
	sub := bus.Subscribe(0)
	defer sub.Close()
	ctx := stream.Context()
	if m := s.opts.Containers; m != nil {
		go func() {
			t := time.NewTicker(exitPoll)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					run := container.Running
					m.List(ctx, container.Filter{State: &run})
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-sub.C():
			if !ok {
				if err := sub.Err(); err != nil {
					return status.Error(codes.ResourceExhausted, err.Error())
				}
				return nil
			}
			// A subscriber already dropped learns it now, not after the
			// events still queued for it.
			if err := sub.Err(); err != nil {
				return status.Error(codes.ResourceExhausted, err.Error())
			}
			if err := stream.Send(s.eventResponse(ctx, e)); err != nil {
				return err
			}
		}
	}
}

// eventResponse is the event with the pod's status and its containers'
// statuses, as the kubelet's evented PLEG expects. The event's own object
// is reported as it was at the event (its snapshot); the others as they are.
func (s *Server) eventResponse(ctx context.Context, e events.Event) *runtimeapi.ContainerEventResponse {
	resp := &runtimeapi.ContainerEventResponse{ContainerId: e.ID, ContainerEventType: eventKinds[e.Kind], CreatedAt: e.Time.UnixNano()}
	if e.Sandbox {
		if sb, ok := e.Snapshot.(*sandbox.Sandbox); ok {
			resp.PodSandboxStatus = podStatusOf(sb, e.Kind == events.Created || e.Kind == events.Started)
		}
	} else if sm := s.opts.Sandboxes; sm != nil {
		if st, err := sm.Status(e.PodID); err == nil {
			resp.PodSandboxStatus = podStatusOf(st.Sandbox, st.Ready)
		}
	}
	var own *container.Record
	if rec, ok := e.Snapshot.(*container.Record); ok && !e.Sandbox {
		own = rec
		if e.Kind != events.Deleted {
			resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatus(rec))
		}
	}
	if m := s.opts.Containers; m != nil && !(e.Sandbox && e.Kind == events.Deleted) {
		for _, r := range m.List(ctx, container.Filter{PodID: e.PodID}) {
			if own != nil && r.ID == own.ID {
				continue
			}
			resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatus(r))
		}
	}
	return resp
}

// podStatusOf is a pod's CRI status from its record.
func podStatusOf(sb *sandbox.Sandbox, ready bool) *runtimeapi.PodSandboxStatus {
	c := sb.Config
	st := &runtimeapi.PodSandboxStatus{
		Id: sb.ID, Metadata: podMetadata(c.Metadata), State: podState(ready), CreatedAt: sb.CreatedAt.UnixNano(),
		Labels: c.Labels, Annotations: c.Annotations, RuntimeHandler: c.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network: nsMode(c.HostNetwork, true), Ipc: nsMode(c.HostIPC, true), Pid: nsMode(c.HostPID, c.SharedPID),
		}}},
	}
	if !c.HostNetwork && len(sb.IPs) > 0 {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: sb.IPs[0]}
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}
