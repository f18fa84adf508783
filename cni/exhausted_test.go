package cni

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/berth-dev/berth/errdefs"
)

func TestAddErrorClassifiesExhaustion(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"host-local", &types.Error{Code: types.ErrInternal, Msg: "failed to allocate for range 0: no IP addresses available in range set: 10.88.0.2-10.88.0.2"}, true},
		{"host-local, DEL failing too", fmt.Errorf("%w (and cleaning up: %v)",
			&types.Error{Code: types.ErrInternal, Msg: "failed to allocate for range 0: no IP addresses available in range set: 10.88.0.2-10.88.0.2"}, errors.New("boom")), true},
		{"bridge out of ports", &types.Error{Code: types.ErrInternal, Msg: `failed to connect "veth1234abcd" to bridge cni0: exchange full`}, true},
		{"whereabouts", &types.Error{Code: types.ErrInternal, Msg: "error at storage engine", Details: "Could not allocate IP in range: ip: 10.0.0.1 / - 10.0.0.6"}, true},
		{"other plugin error", &types.Error{Code: types.ErrTryAgainLater, Msg: "no luck today"}, false},
		{"not a plugin's words", fmt.Errorf("load CNI config /etc/cni/net.d/no IP addresses available.conflist: %w", os.ErrNotExist), false},
		{"nil", nil, false},
	} {
		if got := exhausted(c.err); got != c.want {
			t.Errorf("%s: exhausted(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
		if c.err == nil {
			continue
		}
		err := addError("podnet", c.err)
		if errors.Is(err, errdefs.ErrResourceExhausted) != c.want {
			t.Errorf("%s: addError = %v, ResourceExhausted %v", c.name, err, !c.want)
		}
		var pe *types.Error
		if !strings.Contains(err.Error(), `"podnet"`) || !strings.Contains(err.Error(), c.err.Error()) ||
			(errors.As(c.err, &pe) && !errors.As(err, &pe)) {
			t.Errorf("%s: addError = %v: must name the network and keep the plugin's error", c.name, err)
		}
	}
}

// TestExhaustedHostLocal runs the node's host-local plugin (Debian's
// containernetworking-plugins) on a one-address range twice, through
// libcni's invoke as Setup does, so that the test fails when the plugin's
// words change.
func TestExhaustedHostLocal(t *testing.T) {
	const plugin = "/usr/lib/cni/host-local"
	if _, err := os.Stat(plugin); err != nil {
		t.Skipf("no host-local plugin: %v", err)
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"tiny","type":"host-local","ipam":{"type":"host-local",`+
		`"ranges":[[{"subnet":"10.250.0.0/30","rangeStart":"10.250.0.2","rangeEnd":"10.250.0.2"}]],"dataDir":%q}}`, t.TempDir())
	add := func(id string) error {
		args := &invoke.Args{Command: "ADD", ContainerID: id, NetNS: "/proc/self/ns/net", IfName: "eth0", Path: "/usr/lib/cni"}
		_, err := invoke.ExecPluginWithResult(context.Background(), plugin, []byte(conf), args, nil)
		return err
	}
	if err := add("first"); err != nil {
		t.Fatalf("first ADD: %v", err)
	}
	err := add("second")
	if err == nil {
		t.Fatal("second ADD got an address from a range of one")
	}
	if !exhausted(err) {
		t.Fatalf("host-local's error is not seen as exhaustion: %#v", err)
	}
}
