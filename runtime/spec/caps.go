package spec

import (
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultCapabilities are containerd's defaults for a container.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// AllCapabilities are the capabilities berthd's bounding set holds (all
// the library knows when it cannot be read), in number order: what ALL
// and privileged mean, as containerd's cap.Current(). A node may withhold
// some from its runtime (nested nodes often lack CAP_SYS_RESOURCE), and
// asking the kernel for them would fail every privileged container.
func AllCapabilities() []string { return slices.Clone(heldCapabilities()) }

var heldCapabilities = sync.OnceValue(func() []string {
	var held func(capability.Cap) bool
	if c, err := capability.NewPid2(0); err == nil && c.Load() == nil {
		held = func(k capability.Cap) bool { return c.Get(capability.BOUNDING, k) }
	}
	var out []string
	for _, k := range capability.ListKnown() {
		if held == nil || held(k) {
			out = append(out, "CAP_"+strings.ToUpper(k.String()))
		}
	}
	return out
})

func isAll(c string) bool { return normalizeCap(c) == "ALL" }

// normalizeCap accepts "NET_ADMIN", "net_admin" and "CAP_NET_ADMIN".
func normalizeCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c == "ALL" || strings.HasPrefix(c, "CAP_") {
		return c
	}
	return "CAP_" + c
}

// Capabilities gives the container's sets: privileged gets all; otherwise
// the defaults with the request's drops then adds ("ALL" allowed in
// either), and the ambient ones added to every set.
func Capabilities(sc *runtimeapi.LinuxContainerSecurityContext) (*specs.LinuxCapabilities, error) {
	known, held := map[string]bool{}, map[string]bool{}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = true
	}
	all := AllCapabilities()
	for _, c := range all {
		held[c] = true
	}
	var caps []string
	if sc.GetPrivileged() {
		caps = all
	} else {
		set := map[string]bool{}
		for _, c := range DefaultCapabilities {
			set[c] = true
		}
		// containerd's and CRI-O's order (kubernetes#51980): ALL in add,
		// ALL in drop, then each add, then each drop; so add ALL with
		// drop X is every capability but X, and a drop beats an add.
		add, drop := sc.GetCapabilities().GetAddCapabilities(), sc.GetCapabilities().GetDropCapabilities()
		if slices.ContainsFunc(add, isAll) {
			for _, a := range all {
				set[a] = true
			}
		}
		if slices.ContainsFunc(drop, isAll) {
			set = map[string]bool{}
		}
		for _, c := range add {
			if c = normalizeCap(c); c == "ALL" {
				continue
			}
			if !known[c] {
				return nil, invalid("unknown capability %q to add", c)
			}
			if !held[c] {
				return nil, invalid("capability %s is not available to berth on this node", c)
			}
			set[c] = true
		}
		for _, c := range drop {
			if c = normalizeCap(c); c == "ALL" {
				continue
			}
			if !known[c] {
				return nil, invalid("unknown capability %q to drop", c)
			}
			delete(set, c)
		}
		var ambient []string
		for _, c := range sc.GetCapabilities().GetAddAmbientCapabilities() {
			c = normalizeCap(c)
			if !known[c] {
				return nil, invalid("unknown ambient capability %q", c)
			}
			if !held[c] {
				return nil, invalid("capability %s is not available to berth on this node", c)
			}
			set[c] = true
			ambient = append(ambient, c)
		}
		for _, c := range all {
			if set[c] {
				caps = append(caps, c)
			}
		}
		if len(ambient) > 0 {
			return &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
				Inheritable: ambient, Ambient: ambient,
			}, nil
		}
	}
	return &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}, nil
}
