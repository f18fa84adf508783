package framework

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/test/framework/testimages"
)

// Registry is a local registry on 127.0.0.1 serving every test image (see
// package testimages: critest's images under their own references, the
// benchmark image, berth's fixtures), stopped when the test ends.
//
// How upstream references map to it: the upstream repository <host>/<path>
// is the local repository <host>/<path>, e.g. registry.k8s.io/pause:3.9 is
// served as 127.0.0.1:PORT/registry.k8s.io/pause:3.9 and busybox (that is
// docker.io/library/busybox) as 127.0.0.1:PORT/docker.io/library/busybox.
// HostsDir says so in containerd's hosts.toml format, one
// <host>/hosts.toml per upstream (testimages.Upstreams):
//
//	server = "http://127.0.0.1:PORT/v2/registry.k8s.io"
//	override_path = true
//
//	[host."http://127.0.0.1:PORT/v2/registry.k8s.io"]
//	  capabilities = ["pull", "resolve"]
//	  override_path = true
//
// override_path = true means the URL's path is the API root in place of /v2,
// so a pull of registry.k8s.io/pause:3.9 asks for
// http://127.0.0.1:PORT/v2/registry.k8s.io/pause/manifests/3.9. The local
// registry is the mirror and the server both: a pull the mirror fails falls
// through to the "registry itself", which is the local one again, so no test
// reaches for the internet (a missing image is a 404 from 127.0.0.1).
type Registry struct {
	Addr     string   // 127.0.0.1:port
	HostsDir string   // hosts.toml dir for berthd --registry-config-dir
	Refs     []string // upstream reference of every fixture image

	srv     *testimages.Server
	counter *requestCounter
}

var (
	layoutOnce sync.Once
	layoutDir  string
	layoutErr  error
)

// TestImagesLayout is the OCI layout of the test images, built on first use
// (make test-images builds it ahead; then this takes milliseconds).
func TestImagesLayout(t testing.TB) string {
	t.Helper()
	layoutOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		layoutDir, layoutErr = testimages.Build(ctx, testimages.CacheRoot())
	})
	if layoutErr != nil {
		t.Fatalf("build test images: %v", layoutErr)
	}
	return layoutDir
}

// RegistryOption changes how StartRegistry serves.
type RegistryOption func(*testimages.Options)

// WithRegistryWrap wraps the registry's HTTP handler, e.g. to corrupt a blob,
// answer 401 or 404, or stall, for the tests of failing pulls (see the
// ready-made faults in registryfaults.go). Wraps compose: the last one given
// sees a request first.
func WithRegistryWrap(wrap func(http.Handler) http.Handler) RegistryOption {
	return func(o *testimages.Options) {
		inner := o.Wrap
		if inner == nil {
			o.Wrap = wrap
			return
		}
		o.Wrap = func(h http.Handler) http.Handler { return wrap(inner(h)) }
	}
}

// WithRegistryLog sends the registry's request log to the test log.
func WithRegistryLog(t testing.TB) RegistryOption {
	return func(o *testimages.Options) { o.Logf = t.Logf }
}

// StartRegistry starts a local registry with every test image on a free port
// of 127.0.0.1 and writes its HostsDir; both go when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	counter := &requestCounter{n: map[string]int{}}
	o := testimages.Options{BlobDir: t.TempDir()}
	for _, opt := range append([]RegistryOption{WithRegistryWrap(counter.wrap)}, opts...) {
		opt(&o)
	}
	srv, err := testimages.Serve(TestImagesLayout(t), o)
	if err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("stop registry: %v", err)
		}
	})
	r := &Registry{Addr: srv.Addr, HostsDir: filepath.Join(t.TempDir(), "certs.d"), Refs: srv.Refs, srv: srv, counter: counter}
	if err := r.WriteHosts(r.HostsDir); err != nil {
		t.Fatal(err)
	}
	return r
}

// WriteHosts writes the registry's hosts.toml files into dir, e.g. a
// daemon's <dir>/certs.d before StartDaemon.
func (r *Registry) WriteHosts(dir string) error {
	return testimages.WriteHostsDir(dir, r.Addr, testimages.Upstreams)
}

// LocalRef is an upstream reference as the local registry names it, for
// clients that do not read hosts.toml: 127.0.0.1:PORT/<host>/<path>:<tag>.
func (r *Registry) LocalRef(t testing.TB, ref string) string {
	t.Helper()
	l, err := r.srv.LocalRef(ref)
	if err != nil {
		t.Fatalf("local reference of %q: %v", ref, err)
	}
	return l
}

func (r *Registry) localName(t testing.TB, ref string) name.Reference {
	t.Helper()
	n, err := name.ParseReference(r.LocalRef(t, ref), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// PushImage makes img pullable as the upstream reference ref (e.g.
// berth.test/custom/app:1) through HostsDir.
func (r *Registry) PushImage(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	if err := remote.Write(r.localName(t, ref), img, remote.WithContext(Context(t))); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// PushIndex makes a multi-platform index pullable as ref.
func (r *Registry) PushIndex(t testing.TB, ref string, idx v1.ImageIndex) {
	t.Helper()
	if err := remote.WriteIndex(r.localName(t, ref), idx, remote.WithContext(Context(t))); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// Image fetches the image ref from the registry (the host platform's entry
// of an index), e.g. to build a custom image on a fixture.
func (r *Registry) Image(t testing.TB, ref string) v1.Image {
	t.Helper()
	img, err := remote.Image(r.localName(t, ref), remote.WithContext(Context(t)))
	if err != nil {
		t.Fatalf("fetch %s: %v", ref, err)
	}
	return img
}
