package cni

import (
	"encoding/json"

	"github.com/containernetworking/cni/libcni"
)

// DelNeedsNetNS reports whether the CNI DEL of pod id needs its network
// namespace. A DEL that does not may run once the namespace is unpinned:
// the kernel then deletes the pod's veth with the namespace, in its
// batched cleanup, instead of the bridge plugin deleting it (a netlink
// round trip that waits for RCU) while the next stop waits behind the
// release. Only plugins known to undo their ADD without entering the
// namespace qualify; any other, or anything unreadable, needs it.
func (n *Network) DelNeedsNetNS(id string) bool {
	atts, err := n.cni.GetCachedAttachments(id)
	if err != nil {
		return true
	}
	if len(atts) == 0 {
		list, err := LoadNetwork(n.confDir)
		return err != nil || listNeedsNetNS(list)
	}
	for _, a := range atts {
		list, err := libcni.ConfListFromBytes(a.Config)
		if err != nil || listNeedsNetNS(list) {
			return true
		}
	}
	return false
}

// listNeedsNetNS: a bridge without ipMasq or MAC spoof check and with
// host-local IPAM (without the namespace its DEL only frees the address;
// the masquerade and spoof rules it would skip need the addresses it reads
// there), portmap (its rules are named by the container's id) and loopback
// (berth skips it) need no namespace at DEL.
func listNeedsNetNS(list *libcni.NetworkConfigList) bool {
	if len(list.Plugins) == 0 {
		return true
	}
	for _, p := range list.Plugins {
		switch p.Network.Type {
		case "portmap", "loopback":
		case "bridge":
			var c struct {
				IPMasq      bool `json:"ipMasq"`
				MacSpoofChk bool `json:"macspoofchk"`
				IPAM        struct {
					Type string `json:"type"`
				} `json:"ipam"`
			}
			if json.Unmarshal(p.Bytes, &c) != nil || c.IPMasq || c.MacSpoofChk || c.IPAM.Type != "host-local" {
				return true
			}
		default:
			return true
		}
	}
	return false
}
