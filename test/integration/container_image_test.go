package integration

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// The kubelet creates a container with the resolved image id and the pod
// spec's image name beside it (UserSpecifiedImage), and shows the status's
// image as the container's: it must be the name, as CRI-O and containerd
// report it (the node e2e spec of a pod whose image is updated waits for
// the new name), also after a restart of berthd.
func TestContainerImageAsUserNamedIt(t *testing.T) {
	e := newCtrEnv(t)
	img, err := e.d.Images.ImageStatus(framework.Context(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}})
	if err != nil || img.GetImage() == nil {
		t.Fatalf("ImageStatus %s: %v", busyboxRef, err)
	}
	// Removed at the end, not in a cleanup: the restarted berthd's own
	// cleanup (stopping it) would run first.
	pod, podCfg := e.pod(t, "image-name")
	byID := ctrConfig("by-id", "sleep", "60")
	byID.Image = &runtimeapi.ImageSpec{Image: img.GetImage().GetId(), UserSpecifiedImage: busyboxRef}
	withID := e.create(t, pod, podCfg, byID)
	byName := e.create(t, pod, podCfg, ctrConfig("by-name", "sleep", "60"))

	check := func(when string) {
		t.Helper()
		for id, want := range map[string]string{withID: busyboxRef, byName: busyboxRef} {
			st, _ := e.status(t, id)
			if got := st.GetImage().GetImage(); got != want {
				t.Errorf("%s: status of %s shows image %q, want %q", when, id, got, want)
			}
			if st.GetImageId() != img.GetImage().GetId() {
				t.Errorf("%s: status of %s shows image id %q, want %q", when, id, st.GetImageId(), img.GetImage().GetId())
			}
		}
		list, err := e.d.Runtime.ListContainers(framework.Context(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
		if err != nil {
			t.Fatalf("%s: ListContainers: %v", when, err)
		}
		for _, c := range list.GetContainers() {
			if c.GetImage().GetImage() != busyboxRef {
				t.Errorf("%s: ListContainers shows %s with image %q, want %q", when, c.GetId(), c.GetImage().GetImage(), busyboxRef)
			}
		}
	}
	check("after create")
	if err := e.d.Stop(t); err != nil {
		t.Fatal(err)
	}
	e.restart(t)
	check("after a restart of berthd")
	removePod(t, e.d, pod)
}
