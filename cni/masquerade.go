package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/utils"
)

// MasqueradeKey is the top-level key of a network config list by which the
// network asks berthd for its masquerade. The bridge plugin's "ipMasq" makes a
// chain and rules per pod, half of each pod's ADD and DEL (six iptables
// runs); berthd keeps one set of rules per subnet of the network instead, as
// flannel, Calico and kubenet do. libcni keeps the key in the list's bytes
// and passes each plugin only its own entry, so no plugin sees it.
const MasqueradeKey = "berthMasquerade"

// maxMasqueradeSubnets bounds what a config can make berthd add.
const maxMasqueradeSubnets = 32

// Masquerade is what a network with MasqueradeKey asks for: the traffic of
// its subnets leaving them is masqueraded.
type Masquerade struct {
	Network string
	Subnets []netip.Prefix // canonical, IPv4 first, no duplicates
}

// MasqueradeOf reads MasqueradeKey and the subnets of the host-local ranges
// of list; nil when the key is absent or false. A key that is not a bool, a
// network without host-local subnets or a subnet that is not a clean CIDR
// is an error: berthd must not run the network half-masqueraded.
func MasqueradeOf(list *libcni.NetworkConfigList) (*Masquerade, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(list.Bytes, &top); err != nil {
		return nil, fmt.Errorf("CNI network %q: %w", list.Name, err)
	}
	raw, ok := top[MasqueradeKey]
	if !ok {
		return nil, nil
	}
	var on bool
	if err := json.Unmarshal(raw, &on); err != nil {
		return nil, fmt.Errorf("CNI network %q: %s must be true or false, not %s", list.Name, MasqueradeKey, raw)
	}
	if !on {
		return nil, nil
	}
	// The name goes into rule comments and the chain's name.
	if err := utils.ValidateNetworkName(list.Name); err != nil {
		return nil, fmt.Errorf("CNI network %q with %s: %s", list.Name, MasqueradeKey, err.Msg)
	}
	if len(list.Name) > 128 {
		return nil, fmt.Errorf("CNI network with %s: name longer than 128 bytes", MasqueradeKey)
	}
	subnets, err := hostLocalSubnets(list)
	if err != nil {
		return nil, fmt.Errorf("CNI network %q with %s: %w", list.Name, MasqueradeKey, err)
	}
	return &Masquerade{Network: list.Name, Subnets: subnets}, nil
}

// hostLocalSubnets are the subnets of every host-local IPAM of the list (its
// ranges, and the older single "subnet"), IPv4 first.
func hostLocalSubnets(list *libcni.NetworkConfigList) ([]netip.Prefix, error) {
	var v4, v6 []netip.Prefix
	seen := map[netip.Prefix]bool{}
	for _, p := range list.Plugins {
		var conf struct {
			IPAM struct {
				Type   string `json:"type"`
				Subnet string `json:"subnet"`
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		}
		if err := json.Unmarshal(p.Bytes, &conf); err != nil {
			return nil, fmt.Errorf("plugin %q: %w", p.Network.Type, err)
		}
		if conf.IPAM.Type != "host-local" {
			continue
		}
		var subnets []string
		if conf.IPAM.Subnet != "" {
			subnets = append(subnets, conf.IPAM.Subnet)
		}
		for _, set := range conf.IPAM.Ranges {
			for _, r := range set {
				subnets = append(subnets, r.Subnet)
			}
		}
		for _, s := range subnets {
			pfx, err := parseSubnet(s)
			if err != nil {
				return nil, err
			}
			if seen[pfx] {
				continue
			}
			seen[pfx] = true
			if pfx.Addr().Is4() {
				v4 = append(v4, pfx)
			} else {
				v6 = append(v6, pfx)
			}
		}
	}
	all := append(v4, v6...)
	if len(all) == 0 {
		return nil, fmt.Errorf("no host-local range with a subnet to masquerade")
	}
	if len(all) > maxMasqueradeSubnets {
		return nil, fmt.Errorf("%d subnets, more than %d", len(all), maxMasqueradeSubnets)
	}
	return all, nil
}

// parseSubnet accepts a CIDR with no host bits set that is neither the
// whole address space (it would masquerade all of the node's traffic) nor
// an IPv4-mapped IPv6 range.
func parseSubnet(s string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet %q: %w", s, err)
	}
	if pfx.Addr().Zone() != "" || pfx.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("subnet %q: not a plain IPv4 or IPv6 range", s)
	}
	if pfx != pfx.Masked() {
		return netip.Prefix{}, fmt.Errorf("subnet %q has host bits set (the range is %s)", s, pfx.Masked())
	}
	if pfx.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("subnet %q is every address: it would masquerade all of the node's traffic", s)
	}
	return pfx, nil
}

// Chain is the nat chain of the network's rules: BERTH-MASQ- and a hash of
// the name (iptables allows 28 bytes).
func (m *Masquerade) Chain() string {
	sum := sha256.Sum256([]byte(m.Network))
	return "BERTH-MASQ-" + hex.EncodeToString(sum[:8])
}

// Comment is on every rule berthd makes for the network (hack/clean-node.sh
// finds them by it).
func (m *Masquerade) Comment() string {
	return "berth masquerade of network " + m.Network
}

// ChainRules are the rules of Chain for the subnets of one family (ipv6
// false: IPv4), in order: as the bridge plugin's per pod, traffic within the
// subnet and to multicast is left alone, the rest is masqueraded.
func (m *Masquerade) ChainRules(ipv6 bool) [][]string {
	multicast := "224.0.0.0/4"
	if ipv6 {
		multicast = "ff00::/8"
	}
	c := m.Comment()
	var rules [][]string
	for _, p := range m.Subnets {
		if p.Addr().Is6() != ipv6 {
			continue
		}
		s := p.String()
		rules = append(rules,
			[]string{"-s", s, "-d", s, "-m", "comment", "--comment", c, "-j", "ACCEPT"},
			[]string{"-s", s, "-d", multicast, "-m", "comment", "--comment", c, "-j", "ACCEPT"},
			[]string{"-s", s, "-m", "comment", "--comment", c, "-j", "MASQUERADE"},
		)
	}
	return rules
}

// JumpRule sends nat POSTROUTING through Chain.
func (m *Masquerade) JumpRule() []string {
	return []string{"-m", "comment", "--comment", m.Comment(), "-j", m.Chain()}
}

// ruleOp is one change reconcile makes to a chain: insert spec at position
// pos, or (spec nil) delete the rule at pos; positions count from 1.
type ruleOp struct {
	pos  int
	spec []string
}

// reconcile gives the changes that turn the chain's rules have into want,
// keeping every rule already in its place: a chain that is right is left
// alone (no window without masquerade on a restart), missing rules are
// inserted where they belong, and what is left after them is deleted.
func reconcile(have, want [][]string) []ruleOp {
	var ops []ruleOp
	cur := append([][]string(nil), have...)
	for i, w := range want {
		if i < len(cur) && slices.Equal(cur[i], w) {
			continue
		}
		ops = append(ops, ruleOp{pos: i + 1, spec: w})
		cur = append(cur[:i], append([][]string{w}, cur[i:]...)...)
	}
	for n := len(cur); n > len(want); n-- {
		ops = append(ops, ruleOp{pos: len(want) + 1})
	}
	return ops
}
