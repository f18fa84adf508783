package cni

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func confList(t *testing.T, top, ipam string) *libcni.NetworkConfigList {
	t.Helper()
	js := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "net-a", %s "plugins": [
		{"type": "bridge", "bridge": "br-a", "ipMasq": false, "ipam": %s},
		{"type": "portmap", "capabilities": {"portMappings": true}}]}`, top, ipam)
	list, err := libcni.ConfListFromBytes([]byte(js))
	if err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	return list
}

func TestMasqueradeOf(t *testing.T) {
	hl := `{"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00:88::/64"}, {"subnet": "10.89.0.0/24"}]]}`
	for _, tc := range []struct {
		name, top, ipam string
		want            []string // nil: no masquerade
		err             string
	}{
		{name: "no key", top: ``, ipam: hl},
		{name: "false", top: `"berthMasquerade": false,`, ipam: hl},
		{name: "ranges", top: `"berthMasquerade": true,`, ipam: hl, want: []string{"10.88.0.0/16", "10.89.0.0/24", "fd00:88::/64"}},
		{name: "legacy subnet", top: `"berthMasquerade": true,`, ipam: `{"type": "host-local", "subnet": "10.1.2.0/24"}`, want: []string{"10.1.2.0/24"}},
		{name: "duplicate", top: `"berthMasquerade": true,`, ipam: `{"type": "host-local", "subnet": "10.1.2.0/24", "ranges": [[{"subnet": "10.1.2.0/24"}]]}`, want: []string{"10.1.2.0/24"}},
		{name: "not a bool", top: `"berthMasquerade": "yes",`, ipam: hl, err: "must be true or false"},
		{name: "no host-local", top: `"berthMasquerade": true,`, ipam: `{"type": "dhcp"}`, err: "no host-local range"},
		{name: "host bits", top: `"berthMasquerade": true,`, ipam: `{"type": "host-local", "subnet": "10.88.0.1/16"}`, err: "host bits set (the range is 10.88.0.0/16)"},
		{name: "everything", top: `"berthMasquerade": true,`, ipam: `{"type": "host-local", "subnet": "0.0.0.0/0"}`, err: "all of the node's traffic"},
		{name: "garbage", top: `"berthMasquerade": true,`, ipam: `{"type": "host-local", "subnet": "10.88.0.0/16 -j ACCEPT"}`, err: `subnet "10.88.0.0/16 -j ACCEPT"`},
		{name: "mapped", top: `"berthMasquerade": true,`, ipam: `{"type": "host-local", "subnet": "::ffff:10.0.0.0/104"}`, err: "not a plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := MasqueradeOf(confList(t, tc.top, tc.ipam))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if m != nil {
					t.Fatalf("masquerade %+v for a config without it", m)
				}
				return
			}
			var got []string
			for _, p := range m.Subnets {
				got = append(got, p.String())
			}
			if !reflect.DeepEqual(got, tc.want) || m.Network != "net-a" {
				t.Fatalf("got %s %v, want net-a %v", m.Network, got, tc.want)
			}
		})
	}
}

func TestMasqueradeOfBadName(t *testing.T) {
	js := `{"cniVersion": "1.0.0", "name": "a b", "berthMasquerade": true, "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}]}`
	list, err := libcni.ConfListFromBytes([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MasqueradeOf(list); err == nil {
		t.Fatal("a network name with a space was accepted")
	}
}

// The default network berth writes asks for the masquerade and leaves the
// bridge plugin's off.
func TestDefaultConflistMasquerade(t *testing.T) {
	b, err := os.ReadFile("../hack/cni-default.conflist")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("@BRIDGE@", "berth0", "@SUBNET@", "10.88.0.0/16", "@IPAMDIR@", "/var/lib/cni/networks").Replace(string(b))
	list, err := libcni.ConfListFromBytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	m, err := MasqueradeOf(list)
	if err != nil || m == nil || len(m.Subnets) != 1 || m.Subnets[0].String() != "10.88.0.0/16" {
		t.Fatalf("masquerade %+v, %v", m, err)
	}
	if !strings.Contains(string(list.Plugins[0].Bytes), `"ipMasq":false`) {
		t.Fatalf("the bridge plugin's ipMasq is on: %s", list.Plugins[0].Bytes)
	}
}

func TestMasqueradeRules(t *testing.T) {
	m := &Masquerade{Network: "berth0", Subnets: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16"), netip.MustParsePrefix("fd00::/64")}}
	c := "berth masquerade of network berth0"
	if got := m.ChainRules(false); !reflect.DeepEqual(got, [][]string{
		{"-s", "10.88.0.0/16", "-d", "10.88.0.0/16", "-m", "comment", "--comment", c, "-j", "ACCEPT"},
		{"-s", "10.88.0.0/16", "-d", "224.0.0.0/4", "-m", "comment", "--comment", c, "-j", "ACCEPT"},
		{"-s", "10.88.0.0/16", "-m", "comment", "--comment", c, "-j", "MASQUERADE"},
	}) {
		t.Fatalf("IPv4 rules %q", got)
	}
	if got := m.ChainRules(true); len(got) != 3 || got[1][3] != "ff00::/8" || got[0][1] != "fd00::/64" {
		t.Fatalf("IPv6 rules %q", got)
	}
	chain := m.Chain()
	if len(chain) > 28 || !strings.HasPrefix(chain, "BERTH-MASQ-") || chain == (&Masquerade{Network: "berth1"}).Chain() {
		t.Fatalf("chain %q", chain)
	}
	if j := m.JumpRule(); j[len(j)-1] != chain {
		t.Fatalf("jump %q", j)
	}
}

func TestReconcile(t *testing.T) {
	a, b, c, x := []string{"a"}, []string{"b"}, []string{"c"}, []string{"x"}
	for _, tc := range []struct {
		name       string
		have, want [][]string
		ops        []ruleOp
	}{
		{name: "right", have: [][]string{a, b, c}, want: [][]string{a, b, c}},
		{name: "empty", have: nil, want: [][]string{a, b}, ops: []ruleOp{{1, a}, {2, b}}},
		{name: "missing middle", have: [][]string{a, c}, want: [][]string{a, b, c}, ops: []ruleOp{{2, b}}},
		{name: "stale", have: [][]string{x, a, b}, want: [][]string{a, b}, ops: []ruleOp{{1, a}, {2, b}, {3, nil}, {3, nil}, {3, nil}}},
		{name: "extra at end", have: [][]string{a, b, x}, want: [][]string{a, b}, ops: []ruleOp{{3, nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := reconcile(tc.have, tc.want)
			if !reflect.DeepEqual(ops, tc.ops) {
				t.Fatalf("ops %v, want %v", ops, tc.ops)
			}
			// Applying them gives want.
			cur := append([][]string(nil), tc.have...)
			for _, op := range ops {
				if op.spec == nil {
					cur = append(cur[:op.pos-1], cur[op.pos:]...)
				} else {
					cur = append(cur[:op.pos-1], append([][]string{op.spec}, cur[op.pos-1:]...)...)
				}
			}
			if !reflect.DeepEqual(cur, tc.want) && len(tc.want) > 0 {
				t.Fatalf("applied: %v, want %v", cur, tc.want)
			}
		})
	}
}

func TestSplitRule(t *testing.T) {
	got := splitRule(`-A BERTH-MASQ-1 -s 10.88.0.0/16 -m comment --comment "berth masquerade of \"x\" \\ y" -j MASQUERADE`)
	want := []string{"-A", "BERTH-MASQ-1", "-s", "10.88.0.0/16", "-m", "comment", "--comment", `berth masquerade of "x" \ y`, "-j", "MASQUERADE"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q", got)
	}
}

// hack/bench.sh and hack/clean-node.sh name the chain with sha256sum.
func TestMasqueradeChainName(t *testing.T) {
	if c := (&Masquerade{Network: "berth0"}).Chain(); c != "BERTH-MASQ-2bfe032993df13cc" {
		t.Fatalf("chain %q, want BERTH-MASQ- and the first 16 hex digits of sha256(name)", c)
	}
}
