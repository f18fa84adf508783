package cri

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/userns"
)

// usernsMapping translates a pod's user namespace request: nil for the
// node's (mode NODE, or no options), the maps for mode POD. Containers
// cannot have user namespaces of their own, nor join another's (CONTAINER
// and TARGET), as in containerd and CRI-O.
func usernsMapping(o *runtimeapi.UserNamespace) (*userns.Mapping, error) {
	if o == nil {
		// Not POD, the enum's zero value.
		return nil, nil
	}
	switch o.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(o.GetUids()) > 0 || len(o.GetGids()) > 0 {
			return nil, fmt.Errorf("%w: user namespace mode NODE takes no id mappings", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, fmt.Errorf("%w: user namespace mode %s is not supported (only NODE and POD)", errdefs.ErrInvalidArgument, o.GetMode())
	}
	m := &userns.Mapping{UIDs: idMaps(o.GetUids()), GIDs: idMaps(o.GetGids())}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func idMaps(in []*runtimeapi.IDMapping) []userns.IDMap {
	out := make([]userns.IDMap, 0, len(in))
	for _, im := range in {
		out = append(out, userns.IDMap{ContainerID: im.GetContainerId(), HostID: im.GetHostId(), Size: im.GetLength()})
	}
	return out
}

func criIDMaps(in []userns.IDMap) []*runtimeapi.IDMapping {
	out := make([]*runtimeapi.IDMapping, 0, len(in))
	for _, im := range in {
		out = append(out, &runtimeapi.IDMapping{ContainerId: im.ContainerID, HostId: im.HostID, Length: im.Size})
	}
	return out
}

// usernsOptions is what a pod's status reports of its user namespace.
func usernsOptions(m *userns.Mapping) *runtimeapi.UserNamespace {
	if m == nil {
		return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}
	}
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: criIDMaps(m.UIDs), Gids: criIDMaps(m.GIDs)}
}
