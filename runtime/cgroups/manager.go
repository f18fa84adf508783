package cgroups

import (
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Manager is a cgroup driver: where a pod's cgroup goes below the CRI's
// CgroupParent, how it is made with the pod's limits, how the pod's first
// process (its shim) is put in it, and how it is removed. Containers'
// cgroups are plain cgroups below their pod's under both drivers (see
// ContainerCgroup), so the shim and runtime/cgroupfs work the same way.
type Manager interface {
	// Driver is "cgroupfs" or "systemd", as RuntimeConfig reports it.
	Driver() string
	// PodCgroup is the cgroupfs path of the pod's cgroup below parent ("" is
	// the driver's default). A parent the driver cannot use is an error.
	PodCgroup(parent, podID string) (string, error)
	// CreatePod makes the pod's cgroup (path from PodCgroup) with its
	// limits; place puts the shim's pid in it.
	CreatePod(path string, resources *specs.LinuxResources) (place func(pid int) error, err error)
	// DeletePod removes the pod's cgroup, and kills what is left in it; a
	// pod cgroup already gone is no error.
	DeletePod(path string) error
	// UpdatePod sets new limits on a live pod's cgroup (in-place pod
	// resize); the limits resources leaves out stay as they are.
	UpdatePod(path string, resources *specs.LinuxResources) error
}

// ContainerCgroup is where a container's cgroup goes in its pod's, under
// either driver: the systemd driver delegates the pod's scope to berth.
func ContainerCgroup(podCgroup, id string) string { return path.Join(podCgroup, id) }

// ExpandSlice is the cgroupfs path of a systemd slice, as systemd lays them
// out: "a-b-c.slice" is /a.slice/a-b.slice/a-b-c.slice, "-.slice" is "/".
func ExpandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || strings.Contains(slice, "/") {
		return "", fmt.Errorf("%q is not a systemd slice name (like kubepods-besteffort.slice)", slice)
	}
	if name == "-" {
		return "/", nil
	}
	if name == "" || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid systemd slice name %q", slice)
	}
	var p, prefix string
	for _, part := range strings.Split(name, "-") {
		if prefix != "" {
			prefix += "-"
		}
		prefix += part
		p += "/" + prefix + ".slice"
	}
	return p, nil
}
