// Package reference parses image references the way the CRI's callers write
// them (`busybox`, `name:tag`, `name@sha256:...`, `name:tag@sha256:...`) into
// their fully qualified form (docker.io/library/busybox:latest).
package reference

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/berth-dev/berth/errdefs"
)

const (
	// DefaultDomain is the registry of references that name none.
	DefaultDomain = "docker.io"
	// DefaultTag is the tag of references that carry neither tag nor digest.
	DefaultTag = "latest"
)

var (
	componentRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRe       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	domainRe    = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$`)
	digestRe    = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	hexRe       = regexp.MustCompile(`^[a-f0-9]+$`)
)

// Reference is a parsed, normalised image reference. Tag is set when the
// reference names a tag (DefaultTag when it names neither tag nor digest).
type Reference struct {
	Domain string // e.g. docker.io, registry.k8s.io, 127.0.0.1:5000
	Path   string // e.g. library/busybox
	Tag    string
	Digest string // sha256:<hex>
}

// Parse parses and normalises s. It fails with errdefs.ErrInvalidArgument.
func Parse(s string) (Reference, error) {
	var r Reference
	bad := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("%w: image reference %q: %s", errdefs.ErrInvalidArgument, s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > 4096 {
		return bad("too long")
	}
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.Digest = rest[i+1:]
		rest = rest[:i]
		if !digestRe.MatchString(r.Digest) {
			return bad("digest must be sha256:<64 lowercase hex>")
		}
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		r.Tag = rest[i+1:]
		rest = rest[:i]
		if !tagRe.MatchString(r.Tag) {
			return bad("invalid tag")
		}
	}
	if rest == "" {
		return bad("no repository name")
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		first := rest[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			r.Domain, r.Path = first, rest[i+1:]
		}
	}
	if r.Domain == "" {
		r.Domain, r.Path = DefaultDomain, rest
	}
	if !domainRe.MatchString(r.Domain) {
		return bad("invalid registry host")
	}
	if r.Domain == "index.docker.io" || r.Domain == "registry-1.docker.io" {
		r.Domain = DefaultDomain
	}
	if r.Domain == DefaultDomain && !strings.Contains(r.Path, "/") {
		r.Path = "library/" + r.Path
	}
	if len(r.Path) > 255 {
		return bad("repository name too long")
	}
	for _, c := range strings.Split(r.Path, "/") {
		if !componentRe.MatchString(c) {
			return bad(fmt.Sprintf("invalid repository name component %q", c))
		}
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = DefaultTag
	}
	return r, nil
}

// Name is the repository: domain/path.
func (r Reference) Name() string { return r.Domain + "/" + r.Path }

// TagRef is name:tag, or "" without a tag.
func (r Reference) TagRef() string {
	if r.Tag == "" {
		return ""
	}
	return r.Name() + ":" + r.Tag
}

// DigestRef is name@digest, or "" without a digest.
func (r Reference) DigestRef() string {
	if r.Digest == "" {
		return ""
	}
	return r.Name() + "@" + r.Digest
}

// String is the full normalised reference.
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Familiar is the short form people type (busybox:latest for
// docker.io/library/busybox:latest).
func (r Reference) Familiar() string {
	s := r.String()
	if r.Domain == DefaultDomain {
		s = strings.TrimPrefix(strings.TrimPrefix(s, DefaultDomain+"/"), "library/")
	}
	return s
}

// IDPrefix reports whether s may be an image ID or a prefix of one
// (hex, optionally with "sha256:"), and returns the hex part. Short hex
// strings are also valid repository names; callers try IDs first only when
// an image with that ID prefix exists.
func IDPrefix(s string) (string, bool) {
	h := strings.TrimPrefix(s, "sha256:")
	if h == "" || len(h) > 64 || !hexRe.MatchString(h) {
		return "", false
	}
	return h, true
}
