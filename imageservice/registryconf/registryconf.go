// Package registryconf reads registry host configuration in containerd's
// hosts.toml format: a directory with one <host>/hosts.toml per registry,
// listing mirrors to try in order before the registry (`server`) itself.
//
//	server = "https://registry-1.docker.io"
//
//	[host."http://127.0.0.1:5000"]
//	  capabilities = ["pull", "resolve"]
//	  skip_verify = true
//	  ca = "ca.crt"              # or a list; relative to the host's dir
//	  override_path = true       # the URL path is the API root (no /v2 added)
//
// The directory of host h is looked up as h with ":port" written "_port_"
// (containerd's spelling), then h itself, then "_default".
package registryconf

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/berth-dev/berth/errdefs"
)

// Capabilities of a host: resolve turns a tag into a manifest digest, pull
// fetches manifests and blobs by digest.
const (
	CapPull    = "pull"
	CapResolve = "resolve"
)

// Host is one endpoint to try, mirrors first and the registry last.
type Host struct {
	Scheme string // http or https
	Host   string // host[:port]
	// Path is the API root (…/v2 unless override_path), "/v2" for a plain host.
	Path         string
	Capabilities []string
	SkipVerify   bool
	CAs          []string // absolute paths of PEM files
	// Clients are client certificate and key files (absolute paths).
	Clients [][2]string
	Header  map[string][]string
	Mirror  bool
}

// Has reports whether h has capability c.
func (h Host) Has(c string) bool {
	for _, x := range h.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}

// URL is the API root of h.
func (h Host) URL() string { return h.Scheme + "://" + h.Host + h.Path }

type hostFile struct {
	Server string `toml:"server"`
	hostEntry
	Host map[string]hostEntry `toml:"host"`
}

type hostEntry struct {
	Capabilities []string            `toml:"capabilities"`
	SkipVerify   *bool               `toml:"skip_verify"`
	CA           any                 `toml:"ca"`
	Client       any                 `toml:"client"`
	OverridePath bool                `toml:"override_path"`
	Header       map[string][]string `toml:"header"`
}

// DefaultHost is the endpoint of a registry without any configuration.
func DefaultHost(registry string) Host {
	h := Host{Scheme: "https", Host: registry, Path: "/v2", Capabilities: []string{CapPull, CapResolve}}
	if registry == "docker.io" {
		h.Host = "registry-1.docker.io"
	}
	if isLocal(registry) {
		h.Scheme = "http"
	}
	return h
}

func isLocal(host string) bool {
	name := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		name = host[:i]
	}
	return name == "localhost" || strings.HasPrefix(name, "127.") || name == "[::1]"
}

// Dir is the directory holding registry's hosts.toml under root, or "" if none.
func Dir(root, registry string) string {
	var cands []string
	if i := strings.LastIndexByte(registry, ':'); i > 0 {
		cands = append(cands, registry[:i]+"_"+registry[i+1:]+"_")
	}
	cands = append(cands, registry, "_default")
	for _, c := range cands {
		p := filepath.Join(root, c)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
	}
	return ""
}

// Load returns the endpoints for registry from the config dir root, mirrors
// in file order, then the registry itself. A registry without configuration
// gets DefaultHost only.
func Load(root, registry string) ([]Host, error) {
	dir := Dir(root, registry)
	if dir == "" {
		return []Host{DefaultHost(registry)}, nil
	}
	path := filepath.Join(dir, "hosts.toml")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return []Host{DefaultHost(registry)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registry config %s: %w", path, err)
	}
	hosts, err := Parse(data, dir, registry)
	if err != nil {
		return nil, fmt.Errorf("%w: registry config %s: %v", errdefs.ErrInvalidArgument, path, err)
	}
	return hosts, nil
}

// Parse parses a hosts.toml; dir resolves relative CA paths.
func Parse(data []byte, dir, registry string) ([]Host, error) {
	var f hostFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key(s): %s", strings.Join(keys, ", "))
	}
	var hosts []Host
	// TOML tables carry no order; containerd keeps file order, so find each
	// host table's position in the text.
	for _, key := range orderedHostKeys(md, f.Host) {
		h, err := makeHost(key, f.Host[key], dir)
		if err != nil {
			return nil, err
		}
		h.Mirror = true
		hosts = append(hosts, h)
	}
	upstream := DefaultHost(registry)
	if f.Server != "" {
		h, err := makeHost(f.Server, f.hostEntry, dir)
		if err != nil {
			return nil, err
		}
		upstream = h
	} else if err := applyEntry(&upstream, f.hostEntry, dir); err != nil {
		return nil, err
	}
	return append(hosts, upstream), nil
}

func orderedHostKeys(md toml.MetaData, m map[string]hostEntry) []string {
	var keys []string
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		if len(k) >= 2 && k[0] == "host" && !seen[k[1]] {
			if _, ok := m[k[1]]; ok {
				seen[k[1]] = true
				keys = append(keys, k[1])
			}
		}
	}
	return keys
}

func makeHost(raw string, e hostEntry, dir string) (Host, error) {
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Host{}, fmt.Errorf("host %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Host{}, fmt.Errorf("host %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return Host{}, fmt.Errorf("host %q: no host", raw)
	}
	h := Host{Scheme: u.Scheme, Host: u.Host, Capabilities: []string{CapPull, CapResolve}}
	p := strings.TrimSuffix(u.Path, "/")
	if !e.OverridePath {
		if strings.HasSuffix(p, "/v2") {
			// containerd accepts a trailing /v2 in the URL without doubling it
		} else {
			p += "/v2"
		}
	}
	h.Path = p
	if err := applyEntry(&h, e, dir); err != nil {
		return Host{}, fmt.Errorf("host %q: %v", raw, err)
	}
	return h, nil
}

func applyEntry(h *Host, e hostEntry, dir string) error {
	if e.Capabilities != nil {
		h.Capabilities = nil
		for _, c := range e.Capabilities {
			switch c {
			case CapPull, CapResolve:
				h.Capabilities = append(h.Capabilities, c)
			case "push":
			default:
				return fmt.Errorf("unknown capability %q", c)
			}
		}
	}
	if e.SkipVerify != nil {
		h.SkipVerify = *e.SkipVerify
	}
	pairs, err := clientPairs(e.Client)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		for i := range p {
			if p[i] != "" && !filepath.IsAbs(p[i]) {
				p[i] = filepath.Join(dir, p[i])
			}
		}
		if p[1] == "" {
			p[1] = p[0] // one PEM file with certificate and key
		}
		h.Clients = append(h.Clients, p)
	}
	cas, err := stringList(e.CA, "ca")
	if err != nil {
		return err
	}
	for _, ca := range cas {
		if !filepath.IsAbs(ca) {
			ca = filepath.Join(dir, ca)
		}
		h.CAs = append(h.CAs, ca)
	}
	h.Header = e.Header
	return nil
}

// clientPairs reads `client`: "cert.pem", ["cert", "key"], or a list of
// such pairs, as containerd does.
func clientPairs(v any) ([][2]string, error) {
	bad := fmt.Errorf(`client: want "file", ["cert", "key"] or a list of such pairs`)
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return [][2]string{{x, ""}}, nil
	case []any:
		if len(x) == 0 {
			return nil, nil
		}
		if _, isStr := x[0].(string); isStr {
			l, err := stringList(x, "client")
			if err != nil || len(l) > 2 {
				return nil, bad
			}
			p := [2]string{l[0], ""}
			if len(l) == 2 {
				p[1] = l[1]
			}
			return [][2]string{p}, nil
		}
		var out [][2]string
		for _, e := range x {
			ps, err := clientPairs(e)
			if err != nil {
				return nil, bad
			}
			if _, nested := e.([]any); !nested && e != nil {
				if _, isStr := e.(string); !isStr {
					return nil, bad
				}
			}
			out = append(out, ps...)
		}
		return out, nil
	}
	return nil, bad
}

func stringList(v any, key string) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		var out []string
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: want a string or a list of strings", key)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: want a string or a list of strings", key)
}
