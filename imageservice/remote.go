package imageservice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/reference"
	"github.com/berth-dev/berth/imageservice/registryconf"
)

// Auth is what PullImageRequest.auth carries.
type Auth struct {
	Username, Password string
	Auth               string // base64 user:password
	ServerAddress      string
	IdentityToken      string
	RegistryToken      string
}

func (a *Auth) empty() bool {
	return a == nil || (a.Username == "" && a.Password == "" && a.Auth == "" && a.IdentityToken == "" && a.RegistryToken == "")
}

// appliesTo reports whether the credentials are meant for host: all hosts of
// the pull when no server address is given.
func (a *Auth) appliesTo(hosts ...string) bool {
	if a.ServerAddress == "" {
		return true
	}
	sa := a.ServerAddress
	if u, err := url.Parse(sa); err == nil && u.Host != "" {
		sa = u.Host
	}
	sa = strings.TrimSuffix(sa, "/")
	for _, h := range hosts {
		if h == sa || (h == reference.DefaultDomain && (sa == "index.docker.io" || sa == "registry-1.docker.io")) {
			return true
		}
	}
	return false
}

func (a *Auth) authenticator() (authn.Authenticator, error) {
	cfg := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
	if a.Auth != "" && cfg.Username == "" {
		dec, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, fmt.Errorf("%w: auth is not base64: %v", errdefs.ErrInvalidArgument, err)
		}
		user, pass, ok := strings.Cut(string(dec), ":")
		if !ok {
			return nil, fmt.Errorf("%w: auth is not user:password", errdefs.ErrInvalidArgument)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return authn.FromConfig(cfg), nil
}

// endpoint is one registry host to try, with its own client.
type endpoint struct {
	host   registryconf.Host
	repo   name.Repository
	puller *remote.Puller
	rt     http.RoundTripper
	auth   authn.Authenticator

	once   sync.Once
	client *http.Client
	err    error
}

// blobClient is an HTTP client that has done the registry's auth flow for
// pulling from e.repo; blobs are fetched with it directly so that each is
// hashed once, by our own verifier, while it streams.
func (e *endpoint) blobClient(ctx context.Context) (*http.Client, error) {
	e.once.Do(func() {
		t, err := transport.NewWithContext(ctx, e.repo.Registry, e.auth, e.rt, []string{e.repo.Scope(transport.PullScope)})
		if err != nil {
			e.err = err
			return
		}
		e.client = &http.Client{Transport: t}
	})
	return e.client, e.err
}

// blobURL is the URL the client builds; rewrite maps it to the host's API root.
func (e *endpoint) blobURL(digest string) string {
	return e.repo.Registry.Scheme() + "://" + e.repo.RegistryStr() + "/v2/" + e.repo.RepositoryStr() + "/blobs/" + digest
}

func (e *endpoint) String() string { return e.host.URL() }

// newEndpoint builds a client for h serving repository path of ref.
func newEndpoint(ref reference.Reference, h registryconf.Host, auth *Auth) (*endpoint, error) {
	opts := []name.Option{name.WeakValidation}
	if h.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(h.Host+"/"+ref.Path, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: repository %s at %s: %v", errdefs.ErrInvalidArgument, ref.Path, h.Host, err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.ResponseHeaderTimeout = time.Minute
	if h.Scheme == "https" {
		tc := &tls.Config{InsecureSkipVerify: h.SkipVerify} //nolint:gosec // asked for by skip_verify
		if len(h.CAs) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			for _, ca := range h.CAs {
				pem, err := os.ReadFile(ca)
				if err != nil {
					return nil, fmt.Errorf("registry %s: read ca: %w", h.Host, err)
				}
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("%w: registry %s: no certificate in %s", errdefs.ErrInvalidArgument, h.Host, ca)
				}
			}
			tc.RootCAs = pool
		}
		for _, c := range h.Clients {
			cert, err := tls.LoadX509KeyPair(c[0], c[1])
			if err != nil {
				return nil, fmt.Errorf("registry %s: client certificate %s: %w", h.Host, c[0], err)
			}
			tc.Certificates = append(tc.Certificates, cert)
		}
		base.TLSClientConfig = tc
	}
	rt := &rewrite{next: base, registry: repo.RegistryStr(), host: h}
	if h.Mirror {
		rt.ns = ref.Domain
	}
	ropts := []remote.Option{
		remote.WithTransport(rt),
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
		remote.WithUserAgent("berth"),
	}
	var a authn.Authenticator = authn.Anonymous
	if !auth.empty() && auth.appliesTo(h.Host, ref.Domain) {
		var err error
		if a, err = auth.authenticator(); err != nil {
			return nil, err
		}
	}
	ropts = append(ropts, remote.WithAuth(a))
	p, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, err
	}
	return &endpoint{host: h, repo: repo, puller: p, rt: rt, auth: a}, nil
}

// rewrite sends the registry API requests the client builds for
// scheme://registry/v2/... to the configured scheme, host and API root
// (mirrors with a path, override_path), and adds configured headers.
type rewrite struct {
	next     http.RoundTripper
	registry string
	host     registryconf.Host
	// ns names the upstream registry to a mirror, as containerd does
	// (?ns=docker.io), so one mirror can serve several registries.
	ns string
}

func (t *rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == t.registry && (req.URL.Path == "/v2" || strings.HasPrefix(req.URL.Path, "/v2/")) {
		req = req.Clone(req.Context())
		req.URL.Scheme = t.host.Scheme
		req.URL.Host = t.host.Host
		req.Host = t.host.Host
		req.URL.Path = t.host.Path + strings.TrimPrefix(req.URL.Path, "/v2")
		req.URL.RawPath = ""
		if t.ns != "" {
			q := req.URL.Query()
			q.Set("ns", t.ns)
			req.URL.RawQuery = q.Encode()
		}
		for k, vs := range t.host.Header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
	}
	ping := req.URL.Path == t.host.Path || req.URL.Path == t.host.Path+"/"
	resp, err := t.next.RoundTrip(req)
	if err == nil && ping && t.host.Path != "/v2" && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		// A mirror under a path prefix need not answer the version check
		// at its root (containerd never sends one): take it as "no auth".
		resp.Body.Close()
		return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	}
	return resp, err
}

// classify maps registry client errors to errdefs sentinels.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errdefs.IsNoSpace(err) {
		return err // our disk, not the registry
	}
	for _, s := range []error{errdefs.ErrNotFound, errdefs.ErrUnauthenticated, errdefs.ErrPermissionDenied, errdefs.ErrDataLoss,
		errdefs.ErrInvalidArgument, errdefs.ErrUnavailable, errdefs.ErrFailedPrecondition, errdefs.ErrResourceExhausted,
		context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return err
		}
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
		case terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
		case terr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
		case terr.StatusCode == http.StatusTooManyRequests || terr.StatusCode >= 500:
			return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
		}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
			case transport.UnauthorizedErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
			case transport.DeniedErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
			}
		}
		return err
	}
	// A bare errno is a net.Error too (it has Timeout and Temporary), but
	// one that is not inside a network error is a local failure (writing a
	// layer), not the registry's.
	var nerr net.Error
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	if errors.As(err, &nerr) {
		if _, local := nerr.(syscall.Errno); !local {
			return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
		}
	}
	return err
}
