package nri

import (
	"context"
	"time"

	api "github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// UpdatingPod tells plugins of a pod's resources about to change
// (UpdatePodSandboxResources, in-place pod resize); an error fails the
// update before anything changes.
func (n *NRI) UpdatingPod(ctx context.Context, podID string, overhead, resources *runtimeapi.LinuxContainerResources) error {
	if n == nil {
		return nil
	}
	since := time.Now()
	_, err := n.a.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{
		Pod: n.pod(podID), OverheadLinuxResources: nriResources(overhead), LinuxResources: nriResources(resources),
	})
	return n.failed("UpdatePodSandbox", err, since)
}

// PodUpdated tells plugins of a pod's resources changed.
func (n *NRI) PodUpdated(ctx context.Context, podID string) {
	if n == nil {
		return
	}
	since := time.Now()
	err := n.a.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: n.pod(podID)})
	if err != nil {
		klog.ErrorS(n.failed("PostUpdatePodSandbox", err, since), "NRI plugin call failed", "pod", podID)
	}
}
