package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/cri/validate"
	"github.com/berth-dev/berth/errdefs"
)

// PodResizeHook is told of a pod's in-place resize: Update before berth
// applies it (an error fails the request, nothing changed), PostUpdate
// after (its error is logged only). It is where NRI's UpdatePodSandbox and PostUpdatePodSandbox
// plugin calls go.
type PodResizeHook interface {
	UpdatePodSandbox(ctx context.Context, podID string, resources, overhead *runtimeapi.LinuxContainerResources) error
	PostUpdatePodSandbox(ctx context.Context, podID string) error
}

// UpdatePodSandboxResources applies the pod-level resources the kubelet
// sends during an in-place resize to the pod's cgroup.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	id := req.GetPodSandboxId()
	if id == "" {
		return nil, fmt.Errorf("pod sandbox id: %w: empty", errdefs.ErrInvalidArgument)
	}
	if err := validate.Resources("resources", req.GetResources()); err != nil {
		return nil, err
	}
	if err := validate.Resources("overhead", req.GetOverhead()); err != nil {
		return nil, err
	}
	if err := s.podFits(&runtimeapi.LinuxPodSandboxConfig{Resources: req.GetResources(), Overhead: req.GetOverhead()}); err != nil {
		return nil, err
	}
	sb, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	hook := s.opts.PodResize
	if hook != nil {
		if err := hook.UpdatePodSandbox(ctx, sb.ID, req.GetResources(), req.GetOverhead()); err != nil {
			return nil, fmt.Errorf("resize pod %s: %w", sb.ID, err)
		}
	}
	if err := m.UpdateResources(ctx, sb.ID, resources(req.GetResources()), resources(req.GetOverhead())); err != nil {
		return nil, err
	}
	if hook != nil {
		// The resize is done: a hook failing now cannot undo it.
		if err := hook.PostUpdatePodSandbox(ctx, sb.ID); err != nil {
			klog.ErrorS(err, "Post-resize hook", "pod", sb.ID)
		}
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
