package cni

import (
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func TestListNeedsNetNS(t *testing.T) {
	const hostLocal = `"ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]]}`
	for _, c := range []struct {
		name    string
		plugins string
		needs   bool
	}{
		{"berth's default", `{"type":"bridge","bridge":"b0","ipMasq":false,` + hostLocal + `},{"type":"portmap","capabilities":{"portMappings":true}},{"type":"loopback"}`, false},
		{"bridge alone", `{"type":"bridge","bridge":"b0",` + hostLocal + `}`, false},
		{"per-pod masquerade", `{"type":"bridge","bridge":"b0","ipMasq":true,` + hostLocal + `}`, true},
		{"MAC spoof check", `{"type":"bridge","bridge":"b0","macspoofchk":true,` + hostLocal + `}`, true},
		{"DHCP", `{"type":"bridge","bridge":"b0","ipam":{"type":"dhcp"}}`, true},
		{"layer 2 bridge", `{"type":"bridge","bridge":"b0"}`, true},
		{"another plugin", `{"type":"bridge","bridge":"b0",` + hostLocal + `},{"type":"firewall"}`, true},
		{"calico", `{"type":"calico"}`, true},
	} {
		list, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"n","plugins":[` + c.plugins + `]}`))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := listNeedsNetNS(list); got != c.needs {
			t.Errorf("%s: needs the netns at DEL %v, want %v", c.name, got, c.needs)
		}
	}
}
