package testimages

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Upstreams are the registries the hosts.toml dir sends to the local one.
var Upstreams = []string{
	"docker.io", "registry.k8s.io", "gcr.io", "k8s.gcr.io", "public.ecr.aws", "quay.io", fixtureHost,
}

// LocalRepo is where an upstream repository lives in the local registry: its
// path prefixed by its registry host, e.g. registry.k8s.io/pause for
// registry.k8s.io/pause and docker.io/library/busybox for busybox. That way
// the same path on two registries never collides.
func LocalRepo(upstream name.Repository) string {
	host := upstream.RegistryStr()
	if host == name.DefaultRegistry { // ggcr says index.docker.io, hosts.toml dirs say docker.io
		host = "docker.io"
	}
	return host + "/" + upstream.RepositoryStr()
}

// Server is a registry on 127.0.0.1 holding the fixtures of one layout, and
// whatever is pushed to it. Layout blobs are served from the layout's files
// (nothing is copied); pushed blobs go to a temp dir removed by Close.
type Server struct {
	Addr string   // 127.0.0.1:port
	Refs []string // upstream references of every fixture served

	srv      *http.Server
	ownDir   string // temp dir of pushed blobs, removed by Close
	serveErr chan error
}

// Options of a Server.
type Options struct {
	Addr string // listen address; "" means 127.0.0.1:0
	// Wrap, if set, wraps the registry's handler, e.g. to inject faults.
	Wrap func(http.Handler) http.Handler
	// Logf, if set, receives the registry's request log.
	Logf func(format string, args ...any)
	// BlobDir, if set, holds pushed blobs and is left to the caller;
	// otherwise they go to a temp dir that Close removes.
	BlobDir string
}

// Serve starts a registry holding every image of the layout at layoutDir.
func Serve(layoutDir string, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	pushDir, ownDir := opts.BlobDir, false
	if pushDir == "" {
		var err error
		if pushDir, err = os.MkdirTemp("", "berth-registry-blobs-"); err != nil {
			return nil, err
		}
		ownDir = true
	}
	s := &Server{serveErr: make(chan error, 1)}
	if ownDir {
		s.ownDir = pushDir
	}
	logger := log.New(io.Discard, "", 0)
	if opts.Logf != nil {
		logger = log.New(logfWriter(opts.Logf), "registry: ", 0)
	}
	reg := registry.New(
		registry.WithBlobHandler(&blobStore{layout: filepath.Join(layoutDir, "blobs"), pushed: pushDir}),
		registry.Logger(logger),
	)
	var err error
	if s.Refs, err = loadLayout(reg, layoutDir); err != nil {
		s.removeOwnDir()
		return nil, err
	}
	var h http.Handler = reg
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		s.removeOwnDir()
		return nil, fmt.Errorf("registry listen: %w", err)
	}
	s.Addr = ln.Addr().String()
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() { s.serveErr <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the registry and removes the pushed blobs.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.serveErr
	if rerr := s.removeOwnDir(); err == nil {
		err = rerr
	}
	return err
}

func (s *Server) removeOwnDir() error {
	if s.ownDir == "" {
		return nil
	}
	return os.RemoveAll(s.ownDir)
}

// LocalRef is ref as the local registry names it:
// 127.0.0.1:port/<registry>/<repository>[:tag|@digest].
func (s *Server) LocalRef(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	sep := ":"
	if _, ok := r.(name.Digest); ok {
		sep = "@"
	}
	return s.Addr + "/" + LocalRepo(r.Context()) + sep + r.Identifier(), nil
}

// loadLayout PUTs every manifest of the layout into reg under its local
// repository (children of an index first, as registries require), straight
// into the handler: no network, a few milliseconds.
func loadLayout(reg http.Handler, dir string) ([]string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("test image layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, d := range im.Manifests {
		ref := d.Annotations[RefAnnotation]
		if ref == "" {
			continue
		}
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("fixture reference %q: %w", ref, err)
		}
		repo := LocalRepo(tag.Context())
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			cm, err := child.IndexManifest()
			if err != nil {
				return nil, err
			}
			for _, cd := range cm.Manifests {
				if err := putManifest(reg, p, repo, cd.Digest.String(), cd); err != nil {
					return nil, err
				}
			}
		}
		if err := putManifest(reg, p, repo, tag.TagStr(), d); err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	return refs, nil
}

func putManifest(reg http.Handler, p layout.Path, repo, target string, d v1.Descriptor) error {
	b, err := p.Bytes(d.Digest)
	if err != nil {
		return fmt.Errorf("read manifest %s of %s: %w", d.Digest, repo, err)
	}
	req := httptest.NewRequest(http.MethodPut, "/v2/"+repo+"/manifests/"+target, bytes.NewReader(b))
	req.Header.Set("Content-Type", string(d.MediaType))
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		return fmt.Errorf("load %s:%s into registry: %d %s", repo, target, rec.Code, rec.Body.String())
	}
	return nil
}

// blobStore serves blobs from the layout (read-only, trusted: written by
// Build) and keeps pushed ones in a dir of its own.
type blobStore struct {
	layout, pushed string
}

func (b *blobStore) path(h v1.Hash) (string, error) {
	for _, d := range []string{b.pushed, b.layout} {
		p := filepath.Join(d, h.Algorithm, h.Hex)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", registry.ErrNotFound
}

func (b *blobStore) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	p, err := b.path(h)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (b *blobStore) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	p, err := b.path(h)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// Put keeps a pushed blob once its content matches its digest.
func (b *blobStore) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	dir := filepath.Join(b.pushed, h.Algorithm)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".upload-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	got, _, err := v1.SHA256(io.TeeReader(rc, f))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got != h {
		return fmt.Errorf("pushed blob has digest %s, not %s", got, h)
	}
	return os.Rename(f.Name(), filepath.Join(dir, h.Hex))
}

type logfWriter func(format string, args ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// HostsTOML is the containerd-format hosts.toml that sends pulls of upstream
// (a registry host such as registry.k8s.io) to the local registry at addr.
//
// The local registry is both the mirror and the server: a pull that fails
// on the mirror falls through to the "registry itself" as usual, but that is
// the local registry again, so tests never reach for the internet.
//
// The URLs carry the local repository prefix with override_path = true, as
// containerd defines it: the URL's path is the API root in place of /v2, and
// the repository is appended as usual, so requests go to
// http://addr/v2/<upstream>/<repository>/manifests/<ref> (and /blobs/...).
func HostsTOML(upstream, addr string) string {
	return fmt.Sprintf(`# Written by berth's test registry: pulls of %[1]s go to the local
# registry at %[2]s, which also stands in for the registry itself.
server = "http://%[2]s/v2/%[1]s"
override_path = true

[host."http://%[2]s/v2/%[1]s"]
  capabilities = ["pull", "resolve"]
  override_path = true
`, upstream, addr)
}

// WriteHostsDir writes <dir>/<upstream>/hosts.toml for every upstream.
func WriteHostsDir(dir, addr string, upstreams []string) error {
	for _, u := range upstreams {
		d := filepath.Join(dir, u)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(HostsTOML(u, addr)), 0o644); err != nil {
			return err
		}
	}
	return nil
}
