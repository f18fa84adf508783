package cni

import (
	"fmt"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/coreos/go-iptables/iptables"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
)

// Ensure makes the network's nat rules (IPv4 with iptables, IPv6 with
// ip6tables) idempotently: the chain and its rules when missing or
// different, then the jump from POSTROUTING. Nothing is removed when berthd
// stops: running pods need the rules (hack/clean-node.sh removes them).
func (m *Masquerade) Ensure() error {
	for _, ipv6 := range []bool{false, true} {
		want := m.ChainRules(ipv6)
		if len(want) == 0 {
			continue
		}
		proto, family := iptables.ProtocolIPv4, "IPv4"
		if ipv6 {
			proto, family = iptables.ProtocolIPv6, "IPv6"
		}
		ipt, err := iptables.NewWithProtocol(proto)
		if err != nil {
			return fmt.Errorf("masquerade of CNI network %q: %w", m.Network, err)
		}
		if err := m.ensureFamily(ipt, family, want); err != nil {
			return fmt.Errorf("masquerade of CNI network %q (%s): %w", m.Network, family, err)
		}
	}
	return nil
}

func (m *Masquerade) ensureFamily(ipt *iptables.IPTables, family string, want [][]string) error {
	const table = "nat"
	chain := m.Chain()
	ok, err := ipt.ChainExists(table, chain)
	if err != nil {
		return err
	}
	if !ok {
		// Another berthd on the same config may make it at the same time.
		if err := ipt.NewChain(table, chain); err != nil {
			if ok, _ := ipt.ChainExists(table, chain); !ok {
				return err
			}
		}
	}
	lines, err := ipt.List(table, chain)
	if err != nil {
		return err
	}
	var have [][]string
	for _, l := range lines {
		f := splitRule(l)
		if len(f) >= 2 && f[0] == "-A" && f[1] == chain {
			have = append(have, f[2:])
		}
	}
	ops := reconcile(have, want)
	for _, op := range ops {
		if op.spec == nil {
			err = ipt.DeleteById(table, chain, op.pos)
		} else {
			err = ipt.Insert(table, chain, op.pos, op.spec...)
		}
		if err != nil {
			return err
		}
	}
	if len(ops) > 0 {
		klog.InfoS("Masquerade rules of the CNI network set", "network", m.Network, "chain", chain, "family", family, "changes", len(ops))
	}
	return ipt.AppendUnique(table, "POSTROUTING", m.JumpRule()...)
}

// splitRule splits a line of iptables -S into its arguments: iptables quotes
// an argument with spaces in double quotes, escaping " and \ with \.
func splitRule(line string) []string {
	var fields []string
	var b strings.Builder
	in, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			b.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			in = true
		case c == ' ' && !quoted:
			if in {
				fields = append(fields, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if in {
		fields = append(fields, b.String())
	}
	return fields
}

// masqueradeState remembers the masquerade last made, so that the config
// read at every pod's ADD costs no iptables run unless it changed.
type masqueradeState struct {
	mu sync.Mutex
	// done is the config (its bytes) whose masquerade was last made or
	// found unasked: a pod's ADD with the same config parses nothing.
	done string
}

func (s *masqueradeState) ensure(list *libcni.NetworkConfigList) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == string(list.Bytes) {
		return nil
	}
	m, err := MasqueradeOf(list)
	if err != nil {
		// The node's config, not the request, is wrong.
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	if m != nil {
		if err := m.Ensure(); err != nil {
			return err
		}
	}
	s.done = string(list.Bytes)
	return nil
}

// EnsureMasquerade makes the masquerade of the network config of the dir if
// it asks for one (MasqueradeKey), at berthd's start: rules for the pods
// that still run, before any new one. Without a config, or with one libcni
// cannot load, there is nothing to do yet (Ready reports it; the first ADD
// after a config appears makes them); a config whose masquerade is invalid
// or cannot be made is an error.
func (n *Network) EnsureMasquerade() error {
	list, err := LoadNetwork(n.confDir)
	if err != nil {
		return nil
	}
	return n.masq.ensure(list)
}
