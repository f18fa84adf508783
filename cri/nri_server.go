package cri

import (
	"context"
	"encoding/json"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/validate"
)

// nriUpdate lets NRI plugins change a container update; what they make of
// it is held to the request's checks.
func (s *Server) nriUpdate(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if s.opts.NRI == nil {
		return r, nil
	}
	out, err := s.opts.NRI.UpdatingContainer(ctx, id, r)
	if err != nil {
		return nil, err
	}
	if err := validate.Resources("linux (as NRI plugins adjusted it)", out); err != nil {
		return nil, err
	}
	if err := s.fits("linux (as NRI plugins adjusted it)", out); err != nil {
		return nil, err
	}
	return out, nil
}

// nriInfo is Status(verbose)'s "nri": the plugins connected and called.
func (s *Server) nriInfo() string {
	info := map[string]any{"enabled": s.opts.NRI != nil}
	if s.opts.NRI != nil {
		n, plugins := s.opts.NRI.Plugins()
		info["connected"], info["plugins"] = n, plugins
	}
	b, _ := json.Marshal(info)
	return string(b)
}

// Fits refuses resources this node cannot honour (as a request's are).
func (s *Server) Fits(field string, r *runtimeapi.LinuxContainerResources) error {
	return s.fits(field, r)
}
