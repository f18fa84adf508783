package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/validate"
	"github.com/berth-dev/berth/errdefs"
)

// CheckpointContainer dumps a running container with CRIU into the archive
// at the request's location, leaving it running (runtime/checkpoint says
// the layout).
func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if err := validate.AbsPath("location", req.GetLocation()); err != nil {
		return nil, err
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("timeout %d: %w", req.GetTimeout(), errdefs.ErrInvalidArgument)
	}
	if err := m.Checkpoint(ctx, req.GetContainerId(), req.GetLocation(), time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}

// CheckpointPod is not served: berth checkpoints single containers; a pod
// (its sandbox, network and every container together) needs more.
func (s *Server) CheckpointPod(context.Context, *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, fmt.Errorf("CheckpointPod: berth checkpoints single containers (CheckpointContainer), not whole pods: %w", errdefs.ErrUnimplemented)
}

// RestorePod is not served, as CheckpointPod.
func (s *Server) RestorePod(context.Context, *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, fmt.Errorf("RestorePod: berth restores single containers (CreateContainer with a checkpoint archive as its image), not whole pods: %w", errdefs.ErrUnimplemented)
}
