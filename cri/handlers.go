package cri

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

// berth has one runtime. A RuntimeClass names it by a handler: the default
// ("" or "berth") or one of the names the node's config lists
// (runtime_handlers, e.g. the "test-handler" the Kubernetes node e2e suite
// expects preconfigured, as containerd's and CRI-O's CI configure it). A
// pod asking for any of them runs the same way; the name is kept in its
// status.

// checkHandler refuses a handler this node was not configured with.
func (s *Server) checkHandler(h string) error {
	if h == "" || h == runtimeName {
		return nil
	}
	for _, n := range s.opts.RuntimeHandlers {
		if h == n {
			return nil
		}
	}
	return fmt.Errorf("runtime handler %q: %w: not %q nor one of the configured runtime_handlers %q", h, errdefs.ErrInvalidArgument, runtimeName, s.opts.RuntimeHandlers)
}

// runtimeHandlers is what Status reports: the default handler and every
// configured name, all with the default's features.
func (s *Server) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	features := func() *runtimeapi.RuntimeHandlerFeatures {
		// The kubelet (and critest) enable these only when the runtime says
		// so: rro mounts go through mount_setattr(2) in the container init,
		// and user namespaces need id-mapped mounts (probed at start).
		return &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: s.opts.UserNamespaces == nil}
	}
	hs := []*runtimeapi.RuntimeHandler{{Name: "", Features: features()}}
	for _, n := range s.opts.RuntimeHandlers {
		hs = append(hs, &runtimeapi.RuntimeHandler{Name: n, Features: features()})
	}
	return hs
}
