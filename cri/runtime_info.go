package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	runtimeName       = "berth"
	runtimeAPIVersion = "v1"
	// kubeAPIVersion is the CRI version of the legacy Version.version field.
	kubeAPIVersion = "0.1.0"
)

func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    s.opts.Version,
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}

func (s *Server) Status(_ context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	networkReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if s.opts.NetworkReady != nil {
		if err := s.opts.NetworkReady(); err != nil {
			networkReady.Status = false
			networkReady.Reason = "NetworkPluginNotReady"
			networkReady.Message = "network plugin is not ready: " + err.Error()
		}
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeReady, networkReady}},
		// The kubelet enables SupplementalGroupsPolicy Strict only when the
		// runtime says so; runtime/spec honours it. Handler features:
		// cri/handlers.go.
		RuntimeHandlers: s.runtimeHandlers(),
		Features:        &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{"config": s.opts.ConfigJSON, "nri": s.nriInfo()}
		if s.opts.CgroupVersion != "" {
			resp.Info["cgroupVersion"] = s.opts.CgroupVersion
		}
		resp.Info["cdi"] = cdiInfo(s.opts.CDI)
	}
	return resp, nil
}

func (s *Server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.opts.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

func (s *Server) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	s.mu.Lock()
	s.podCIDR = cidr
	s.mu.Unlock()
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// PodCIDR is the pod CIDR last set through UpdateRuntimeConfig.
func (s *Server) PodCIDR() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.podCIDR
}
