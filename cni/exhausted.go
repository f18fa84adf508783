package cni

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berth-dev/berth/errdefs"
)

// exhaustedTexts are what plugins say when the pod network has no room
// left for one more pod, lower case. The CNI spec has no error code for
// this: a plugin's Go error reaches libcni as the *types.Error the plugin
// printed, with code 999 (ErrInternal, skel's code for any plain error) and
// the message as text, so the text is all there is to go on. Only the
// plugin's own words (Msg and Details of that *types.Error) are matched,
// never berth's wrapping or a config path.
var exhaustedTexts = []string{
	// host-local (containernetworking/plugins, Debian's 1.1.1 among them):
	// "failed to allocate for range 0: no IP addresses available in range
	// set: 10.0.0.2-10.0.0.2".
	"no ip addresses available",
	// whereabouts: "Could not allocate IP in range: ip: ... / - ...".
	"could not allocate ip in range",
	// bridge: the kernel's EXFULL when a bridge already has its 1024 ports,
	// which the plugin prints as `failed to connect "veth..." to bridge
	// cni0: exchange full`.
	strings.ToLower(syscall.EXFULL.Error()),
}

// exhausted tells whether err holds a plugin's error saying the network is
// out of addresses (or the bridge out of ports).
func exhausted(err error) bool {
	var pe *types.Error
	if !errors.As(err, &pe) {
		return false
	}
	text := strings.ToLower(pe.Msg + "\n" + pe.Details)
	for _, s := range exhaustedTexts {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// addError is the error of a failed ADD on network: ResourceExhausted for a
// full network, so that the kubelet and its user see a known cause, not
// Unknown.
func addError(network string, err error) error {
	if exhausted(err) {
		return fmt.Errorf("%w: CNI network %q has no free address or port for the pod: %w", errdefs.ErrResourceExhausted, network, err)
	}
	return fmt.Errorf("CNI network %q: %w", network, err)
}
