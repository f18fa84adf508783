package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/validate"
	"github.com/berth-dev/berth/runtime/stream"
)

// StreamServer hands out the single-use URLs of the streaming server
// (k8s.io/cri-streaming's streaming.Server, served by cmd/berthd).
type StreamServer interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

// StreamTargets checks, before a URL is handed out, that the session will
// find what it needs (runtime/stream.Runtime).
type StreamTargets interface {
	Target(ctx context.Context, containerID string) (*stream.Target, error)
	Pod(podID string) error
}

func (s *Server) streaming() error {
	if s.opts.Streams == nil || s.opts.StreamTargets == nil {
		return status.Error(codes.Unimplemented, "no streaming server")
	}
	return nil
}

// Exec returns the URL of an exec session in a running container.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if err := s.streaming(); err != nil {
		return nil, err
	}
	if err := validate.ExecCmd(req.GetCmd()); err != nil {
		return nil, toStatus(err)
	}
	t, err := s.opts.StreamTargets.Target(ctx, req.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	r := proto.Clone(req).(*runtimeapi.ExecRequest)
	r.ContainerId = t.ID
	resp, err := s.opts.Streams.GetExec(r)
	return resp, toStatus(err)
}

// Attach returns the URL of an attach session to a running container's
// main process.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := s.streaming(); err != nil {
		return nil, err
	}
	if !req.GetStdout() && !req.GetStderr() {
		return nil, status.Error(codes.InvalidArgument, "attach: stdout or stderr must be asked for")
	}
	t, err := s.opts.StreamTargets.Target(ctx, req.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetStdin() && !t.Stdin {
		return nil, status.Errorf(codes.FailedPrecondition, "attach: container %s was not created with stdin", t.ID)
	}
	r := proto.Clone(req).(*runtimeapi.AttachRequest)
	r.ContainerId = t.ID
	resp, err := s.opts.Streams.GetAttach(r)
	return resp, toStatus(err)
}

// PortForward returns the URL of a port-forward session into a ready pod.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if err := s.streaming(); err != nil {
		return nil, err
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, status.Errorf(codes.InvalidArgument, "port forward: bad port %d", p)
		}
	}
	if err := s.opts.StreamTargets.Pod(req.GetPodSandboxId()); err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.opts.Streams.GetPortForward(req)
	return resp, toStatus(err)
}
