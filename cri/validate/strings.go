// Package validate checks the strings of a CRI request before any work is
// done. Each ends up in a file (resolv.conf, hosts, hostname, a cgroup
// file), an argv (CNI_ARGS, the container's command) or a path, where a
// newline, a NUL or a separator would be read as more than one value: a
// request that could inject one is refused with InvalidArgument naming the
// field. The limits are Kubernetes' own, so that anything the kubelet sends
// passes.
package validate

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/berth-dev/berth/errdefs"
)

// Kubernetes' limits (k8s.io/apimachinery validation and the kubelet's DNS
// configurer).
const (
	// MaxNameLen bounds object names (a DNS-1123 subdomain).
	MaxNameLen = 253
	// MaxNamespaceLen bounds a namespace (a DNS-1123 label).
	MaxNamespaceLen = 63
	// MaxHostnameLen is the kernel's HOST_NAME_MAX.
	MaxHostnameLen = 64
	// MaxDNSServers is what the resolver reads (MAXNS).
	MaxDNSServers = 3
	// MaxDNSSearches and MaxDNSSearchChars are the kubelet's limits on the
	// search list (and glibc's since 2.26).
	MaxDNSSearches    = 32
	MaxDNSSearchChars = 2048
	// maxDNSOptions bounds the options line.
	maxDNSOptions = 32
	// maxPathLen is PATH_MAX.
	maxPathLen = 4096
)

// invalid is the error of a refused field. The value is shown cut short:
// a 100 KB name must not come back as a 100 KB message.
func invalid(field, value, why string) error {
	return fmt.Errorf("%s %s: %w: %s", field, show(value), errdefs.ErrInvalidArgument, why)
}

func show(v string) string {
	const max = 64
	if len(v) > max {
		return fmt.Sprintf("%q... (%d bytes)", v[:max], len(v))
	}
	return fmt.Sprintf("%q", v)
}

// oneToken refuses what a file or an argv would split: whitespace, control
// characters, bytes that are not UTF-8.
func oneToken(field, v string) error {
	if v == "" {
		return invalid(field, v, "empty")
	}
	if !utf8.ValidString(v) {
		return invalid(field, v, "not UTF-8")
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return invalid(field, v, "must be one token without whitespace or control characters")
		}
	}
	return nil
}

// noNUL refuses a NUL byte, which ends a C string (an argv element, an
// environment entry, a path) early.
func noNUL(field, v string) error {
	if strings.IndexByte(v, 0) >= 0 {
		return invalid(field, v, "contains a NUL byte")
	}
	return nil
}

// oneLine refuses a line break or NUL in a value written as one line.
func oneLine(field, v string) error {
	if strings.ContainsAny(v, "\x00\n\r") {
		return invalid(field, v, "must be one line without NUL")
	}
	return nil
}

// Name checks a metadata name, namespace or uid. They go into CNI_ARGS
// (K8S_POD_NAME=...;...), the pod's hostname and log paths, so only the
// characters of Kubernetes names are allowed (upper case too: crictl and
// critest use it).
func Name(field, v string, max int) error {
	if v == "" {
		return invalid(field, v, "empty")
	}
	if len(v) > max {
		return invalid(field, v, fmt.Sprintf("longer than %d bytes", max))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isAlnum(c) && c != '-' && c != '.' && c != '_' {
			return invalid(field, v, "only letters, digits, '-', '.' and '_' are allowed")
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// label checks one DNS label: letters, digits and '-' (and '_', which
// real search domains carry), 1 to 63 bytes, no '-' at either end.
func label(l string, underscore bool) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !isAlnum(c) && c != '-' && !(underscore && c == '_') {
			return false
		}
	}
	return true
}

// Hostname checks a pod hostname: RFC 1123 labels joined by dots (a
// setHostnameAsFQDN pod's is a full name), at most HOST_NAME_MAX. One
// trailing dot is allowed: the kubelet of a node without a cluster domain
// makes a setHostnameAsFQDN pod's name "<pod>.<subdomain>.<ns>.svc.".
func Hostname(field, v string) error {
	if len(v) > MaxHostnameLen {
		return invalid(field, v, fmt.Sprintf("longer than %d bytes", MaxHostnameLen))
	}
	for _, l := range strings.Split(strings.TrimSuffix(v, "."), ".") {
		if !label(l, false) {
			return invalid(field, v, "not an RFC 1123 host name (labels of letters, digits and '-', joined by '.')")
		}
	}
	return nil
}

// DNSName checks a resolv.conf search domain.
func DNSName(field, v string) error {
	n := strings.TrimSuffix(v, ".")
	if n == "" || len(n) > MaxNameLen {
		return invalid(field, v, fmt.Sprintf("not a DNS name of 1 to %d bytes", MaxNameLen))
	}
	for _, l := range strings.Split(n, ".") {
		if !label(l, true) {
			return invalid(field, v, "not a DNS name (labels of letters, digits, '-' and '_', joined by '.')")
		}
	}
	return nil
}

// IP checks an address: a nameserver, a host IP of a port mapping.
func IP(field, v string) error {
	if err := oneToken(field, v); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return invalid(field, v, "not an IP address")
	}
	return nil
}

// AbsPath checks a path of the node or of a container named by the request.
func AbsPath(field, v string) error {
	if err := noNUL(field, v); err != nil {
		return err
	}
	if len(v) > maxPathLen {
		return invalid(field, v, fmt.Sprintf("longer than %d bytes", maxPathLen))
	}
	if !strings.HasPrefix(v, "/") {
		return invalid(field, v, "not an absolute path")
	}
	return nil
}

// DNS checks what becomes the pod's resolv.conf: one line each for
// search, nameserver and options, where a newline would add a nameserver.
func DNS(servers, searches, options []string) error {
	if len(servers) > MaxDNSServers {
		return invalid("dns_config.servers", strings.Join(servers, " "), fmt.Sprintf("more than %d servers", MaxDNSServers))
	}
	for _, s := range servers {
		if err := IP("dns_config.servers", s); err != nil {
			return err
		}
	}
	if len(searches) > MaxDNSSearches {
		return invalid("dns_config.searches", strings.Join(searches, " "), fmt.Sprintf("more than %d search domains", MaxDNSSearches))
	}
	if n := len(strings.Join(searches, " ")); n > MaxDNSSearchChars {
		return invalid("dns_config.searches", strings.Join(searches, " "), fmt.Sprintf("search list of %d characters, more than %d", n, MaxDNSSearchChars))
	}
	for _, s := range searches {
		if err := DNSName("dns_config.searches", s); err != nil {
			return err
		}
	}
	if len(options) > maxDNSOptions {
		return invalid("dns_config.options", strings.Join(options, " "), fmt.Sprintf("more than %d options", maxDNSOptions))
	}
	for _, o := range options {
		if err := oneToken("dns_config.options", o); err != nil {
			return err
		}
		if len(o) > MaxNameLen {
			return invalid("dns_config.options", o, fmt.Sprintf("longer than %d bytes", MaxNameLen))
		}
	}
	return nil
}

// CgroupParent checks a pod's cgroup parent: a cgroupfs path or a systemd
// slice name, never leaving the cgroup root.
func CgroupParent(v string) error {
	const field = "linux.cgroup_parent"
	if v == "" {
		return nil
	}
	if len(v) > maxPathLen {
		return invalid(field, v, fmt.Sprintf("longer than %d bytes", maxPathLen))
	}
	for _, r := range v {
		if r < ' ' || r == 0x7f {
			return invalid(field, v, "contains a control character")
		}
	}
	for _, seg := range strings.Split(v, "/") {
		if seg == ".." || seg == "." {
			return invalid(field, v, "'.' and '..' are not allowed")
		}
	}
	return nil
}

// Sysctl checks a sysctl's name (dots or slashes between segments of
// letters, digits, '_' and '-'; an interface name may hold more, as
// net.ipv4.conf.eth0.1.forwarding) and that its value is one line.
func Sysctl(name, value string) error {
	field := "linux.sysctls[" + show(name) + "]"
	if name == "" || len(name) > maxPathLen {
		return invalid("linux.sysctls", name, "a sysctl name of 1 to 4096 bytes")
	}
	sep := "."
	if strings.Contains(name, "/") {
		sep = "/"
	}
	for _, seg := range strings.Split(strings.Trim(name, sep), sep) {
		if seg == "" || seg == "." || seg == ".." {
			return invalid("linux.sysctls", name, "malformed sysctl name")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !isAlnum(c) && c != '_' && c != '-' && c != '.' && c != '@' && c != ':' {
				return invalid("linux.sysctls", name, "malformed sysctl name")
			}
		}
	}
	return oneLine(field, value)
}
