package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// IfName is the pod's interface.
const IfName = "eth0"

// Network runs the CNI plugins of one config dir.
type Network struct {
	confDir string
	cni     *libcni.CNIConfig
	masq    masqueradeState
}

// New returns a Network over confDir whose plugins are found in binDirs and
// whose results are cached in cacheDir (not the node-wide /var/lib/cni, so
// runtimes side by side do not see each other's attachments).
func New(confDir string, binDirs []string, cacheDir string) *Network {
	return &Network{confDir: confDir, cni: libcni.NewCNIConfigWithCacheDir(binDirs, cacheDir, nil)}
}

// Ready reports nil when a usable network config exists.
func (n *Network) Ready() error {
	list, err := LoadNetwork(n.confDir)
	if err != nil {
		return err
	}
	_, err = MasqueradeOf(list)
	return err
}

// PortMapping is a hostPort of the pod (portmap's portMappings capability).
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp, udp or sctp
	HostIP        string `json:"hostIP,omitempty"`
}

// Pod is what a network attachment is for.
type Pod struct {
	ID, Name, Namespace, UID string
	// NetNS is the path of the pod's pinned network namespace.
	NetNS        string
	PortMappings []PortMapping
	// PodCIDR is the node's pod range (UpdateRuntimeConfig); it reaches IPAM
	// through the ipRanges capability when the config asks for it.
	PodCIDR string
	// Bandwidth limits the pod's traffic (bandwidth capability), or nil.
	Bandwidth *Bandwidth
}

// Bandwidth is the bandwidth plugin's capability: rates in bit/s, bursts in bits.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// Attachment is the result of Setup.
type Attachment struct {
	Network string   `json:"network"`
	IPs     []string `json:"ips"` // the primary (IPv4 first) comes first
}

// Setup attaches the pod to the network (CNI ADD). On failure it runs DEL
// for what the plugins may have done, so nothing stays allocated, and
// returns an error naming the plugin and its message.
func (n *Network) Setup(ctx context.Context, p Pod) (*Attachment, error) {
	list, err := LoadNetwork(n.confDir)
	if err != nil {
		return nil, err
	}
	if err := n.masq.ensure(list); err != nil {
		return nil, err
	}
	rt := runtimeConf(p)
	list = withoutIdle(list, rt)
	if len(list.Plugins) == 0 {
		return &Attachment{Network: list.Name}, nil
	}
	res, err := n.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		// No cache was written for a failed ADD: DEL with the same list.
		if derr := n.cni.DelNetworkList(context.WithoutCancel(ctx), list, rt); derr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, derr)
		}
		return nil, addError(list.Name, err)
	}
	att, err := attachmentOf(list.Name, res)
	if err != nil {
		_ = n.cni.DelNetworkList(context.WithoutCancel(ctx), list, rt)
		return nil, fmt.Errorf("CNI network %q: %w", list.Name, err)
	}
	// Best effort: without it the pod works, only a reused address stays
	// unreachable from the node until its old neighbour entry expires.
	if err := announce(p.NetNS, att.IPs); err != nil {
		klog.InfoS("Announcing the pod's addresses failed", "pod", p.ID, "err", err)
	}
	return att, nil
}

func runtimeConf(p Pod) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ID,
		NetNS:       p.NetNS,
		IfName:      IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
			{"K8S_POD_UID", p.UID},
		},
		CapabilityArgs: map[string]any{},
	}
	if len(p.PortMappings) > 0 {
		rt.CapabilityArgs["portMappings"] = p.PortMappings
	}
	if p.PodCIDR != "" {
		rt.CapabilityArgs["ipRanges"] = [][]map[string]string{{{"subnet": p.PodCIDR}}}
	}
	if p.Bandwidth != nil {
		rt.CapabilityArgs["bandwidth"] = p.Bandwidth
	}
	return rt
}

func attachmentOf(network string, res types.Result) (*Attachment, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert result: %w", err)
	}
	att := &Attachment{Network: network}
	var v6 []string
	for _, ip := range r.IPs {
		// Only addresses of the pod's own interface (the one in its netns).
		if ip.Interface != nil && *ip.Interface < len(r.Interfaces) {
			if r.Interfaces[*ip.Interface].Sandbox == "" {
				continue
			}
		}
		if ip.Address.IP.To4() != nil {
			att.IPs = append(att.IPs, ip.Address.IP.String())
		} else {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	att.IPs = append(att.IPs, v6...)
	return att, nil
}

// Teardown detaches the pod (CNI DEL) with the config and arguments cached
// at ADD, so it works after a restart and after the config dir changed. An
// empty or missing netns is passed as empty: plugins still release IPs and
// host-side rules. Without a cache entry it runs DEL with the current config.
func (n *Network) Teardown(ctx context.Context, p Pod) error {
	// A pin whose mount is gone (reboot, crash) is an empty file: plugins
	// must not try to enter it.
	var st unix.Statfs_t
	if p.NetNS != "" && (unix.Statfs(p.NetNS, &st) != nil || st.Type != unix.NSFS_MAGIC) {
		p.NetNS = ""
	}
	atts, err := n.cni.GetCachedAttachments(p.ID)
	if err != nil {
		return fmt.Errorf("read CNI cache of %s: %w", p.ID, err)
	}
	if len(atts) == 0 {
		list, err := LoadNetwork(n.confDir)
		if err != nil {
			// No cache and no config: nothing we could release.
			return nil
		}
		rt := runtimeConf(p)
		if err := n.cni.DelNetworkList(ctx, withoutIdle(list, rt), rt); err != nil {
			return fmt.Errorf("CNI DEL of %s on network %q: %w", p.ID, list.Name, err)
		}
		return nil
	}
	var errs []error
	for _, a := range atts {
		list, err := libcni.ConfListFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("cached CNI config of %s: %w", p.ID, err))
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, NetNS: p.NetNS, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
		list = withoutIdle(list, rt)
		if err := n.cni.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL of %s on network %q: %w", p.ID, list.Name, err))
		}
	}
	return errors.Join(errs...)
}

// CachedPods are the ids of the pods the CNI cache holds attachments of.
func (n *Network) CachedPods() ([]string, error) {
	atts, err := n.cni.GetCachedAttachments("")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var ids []string
	for _, a := range atts {
		if !seen[a.ContainerID] {
			seen[a.ContainerID] = true
			ids = append(ids, a.ContainerID)
		}
	}
	return ids, nil
}

// GC asks plugins that support it (CNI 1.1+) to release whatever does not
// belong to the valid pods; older configs are left to Teardown of CachedPods.
func (n *Network) GC(ctx context.Context, validPods []string) error {
	list, err := LoadNetwork(n.confDir)
	if err != nil {
		return nil
	}
	if ok, err := version.GreaterThanOrEqualTo(list.CNIVersion, "1.1.0"); err != nil || !ok {
		return nil
	}
	args := &libcni.GCArgs{}
	for _, id := range validPods {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: id, IfName: IfName})
	}
	if err := n.cni.GCNetworkList(ctx, list, args); err != nil {
		return fmt.Errorf("CNI GC of network %q: %w", list.Name, err)
	}
	return nil
}

// ParseProtocol maps a CRI protocol name to portmap's.
func ParseProtocol(p string) string { return strings.ToLower(p) }

// withoutIdle drops the plugins that have nothing to do for this pod, each
// one exec less (a few milliseconds) on every pod start and stop:
// "loopback", since the pod's lo is brought up when its netns is made
// (package sandbox), "portmap" when the pod maps no port and "bandwidth"
// when the pod has no limits (neither in its capability arguments nor in the
// plugin's own config): they only pass the previous result on, and on DEL
// have nothing of this pod to remove (DEL sees the same cached arguments, so
// it skips them too).
func withoutIdle(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *libcni.NetworkConfigList {
	_, mapsPorts := rt.CapabilityArgs["portMappings"]
	_, limited := rt.CapabilityArgs["bandwidth"]
	c := *list
	c.Plugins = nil
	for _, p := range list.Plugins {
		switch {
		case p.Network.Type == "loopback":
		case p.Network.Type == "portmap" && !mapsPorts:
		case p.Network.Type == "bandwidth" && !limited && !staticBandwidth(p.Bytes):
		default:
			c.Plugins = append(c.Plugins, p)
		}
	}
	return &c
}

// staticBandwidth tells whether a bandwidth plugin's config sets limits of
// its own.
func staticBandwidth(conf []byte) bool {
	var c struct {
		IngressRate uint64 `json:"ingressRate"`
		EgressRate  uint64 `json:"egressRate"`
	}
	return json.Unmarshal(conf, &c) != nil || c.IngressRate > 0 || c.EgressRate > 0
}
