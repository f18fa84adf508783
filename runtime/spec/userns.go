package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/userns"
)

// checkUserns: a container runs in its pod's user namespace, and says so
// (mode POD, the pod's maps), as the kubelet sends it; a container cannot
// have one of its own (as in containerd and CRI-O).
func checkUserns(o *runtimeapi.UserNamespace, pod *userns.Mapping) error {
	if pod == nil {
		// No options mean the node's (not POD, the enum's zero value).
		if o != nil && o.GetMode() != runtimeapi.NamespaceMode_NODE {
			return invalid("user namespace mode %s: the pod has no user namespace, and a container cannot have one of its own", o.GetMode())
		}
		return nil
	}
	if o == nil || o.GetMode() != runtimeapi.NamespaceMode_POD || !pod.Equal(criMapping(o.GetUids(), o.GetGids())) {
		return invalid("a container of a pod with a user namespace runs in it: its user namespace options must be the pod's (mode POD, the same id mappings)")
	}
	return nil
}

func criMapping(uids, gids []*runtimeapi.IDMapping) userns.Mapping {
	conv := func(in []*runtimeapi.IDMapping) []userns.IDMap {
		out := make([]userns.IDMap, 0, len(in))
		for _, im := range in {
			out = append(out, userns.IDMap{ContainerID: im.GetContainerId(), HostID: im.GetHostId(), Size: im.GetLength()})
		}
		return out
	}
	return userns.Mapping{UIDs: conv(uids), GIDs: conv(gids)}
}

func ociIDMaps(in []userns.IDMap) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, 0, len(in))
	for _, im := range in {
		out = append(out, specs.LinuxIDMapping{ContainerID: im.ContainerID, HostID: im.HostID, Size: im.Size})
	}
	return out
}

// idmapMount makes a bind mount id-mapped through the pod's user
// namespace. The request's maps (the kubelet sends the pod's on every
// mount of a pod with a user namespace) must be the pod's: the mount is
// made with the pod's namespace.
func idmapMount(m *specs.Mount, cm *runtimeapi.Mount, pod *userns.Mapping) error {
	if len(cm.GetUidMappings()) == 0 && len(cm.GetGidMappings()) == 0 {
		return nil
	}
	if pod == nil {
		return invalid("mount at %s has id mappings, but the pod has no user namespace", cm.GetContainerPath())
	}
	if !pod.Equal(criMapping(cm.GetUidMappings(), cm.GetGidMappings())) {
		return invalid("mount at %s: its id mappings must be the pod's user namespace's", cm.GetContainerPath())
	}
	m.UIDMappings, m.GIDMappings = ociIDMaps(pod.UIDs), ociIDMaps(pod.GIDs)
	m.Options = append(m.Options, "idmap")
	return nil
}
