package imageservice

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/imagetest"
)

func newService(t *testing.T, mod func(*Options)) *Service {
	t.Helper()
	root := t.TempDir()
	db, err := bolt.Open(filepath.Join(root, "berth.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	opts := Options{Root: root, DB: db, RegistryConfigDir: filepath.Join(root, "certs.d")}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// assertNothingLeft checks that a failed pull left no layer, temp dir or record.
func assertNothingLeft(t *testing.T, s *Service) {
	t.Helper()
	for _, d := range []string{s.layersDir, s.tmpDir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("%s holds %d entries after a failed pull", d, len(ents))
		}
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketLayers, bucketUsers} {
			if k, _ := tx.Bucket(b).Cursor().First(); k != nil {
				t.Errorf("bucket %s holds %s after a failed pull", b, k)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func baseLayers(t *testing.T) (imagetest.Entry, []imagetest.Entry) {
	return imagetest.Entry{}, []imagetest.Entry{
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/busybox", Body: "#!elf", Mode: 0o755},
		{Name: "bin/sh", Type: tar.TypeLink, Link: "bin/busybox"},
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/sh\n"},
		{Name: "etc/old", Body: "to be deleted"},
		{Name: "home/", Type: tar.TypeDir},
		{Name: "home/user/", Type: tar.TypeDir, UID: 1000, GID: 1000, Mode: 0o700},
		{Name: "home/user/f", Body: "x", UID: 1000, GID: 1000},
	}
}

func TestPullAllFormats(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	top := []imagetest.Entry{{Name: "etc/.wh.old"}, {Name: "home/.wh..wh..opq"}, {Name: "home/new", Body: "n"}}
	s := newService(t, nil)
	for _, tc := range []struct {
		name       string
		oci, index bool
		comp       string
	}{
		{"docker-gzip", false, false, imagetest.Gzip},
		{"oci-zstd", true, false, imagetest.Zstd},
		{"oci-plain-index", true, true, imagetest.None},
		{"docker-gzip-list", false, true, imagetest.Gzip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := imagetest.Image(t, tc.oci, "1000:1000",
				imagetest.Layer(t, tc.comp, base...),
				imagetest.Layer(t, tc.comp, append(top, imagetest.Entry{Name: "name", Body: tc.name})...))
			var ref string
			if tc.index {
				other := imagetest.Image(t, tc.oci, "", imagetest.Layer(t, tc.comp, imagetest.Entry{Name: "wrong-arch"}))
				ref = reg.PushIndex(t, "test/"+tc.name+":v1", imagetest.Index(t, img, other))
			} else {
				ref = reg.Push(t, "test/"+tc.name+":v1", img)
			}
			id, err := s.Pull(ctx(t), ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := img.ConfigName(); id != want.String() {
				t.Errorf("id = %s, want config digest %s", id, want)
			}
			got, err := s.Resolve(ctx(t), ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.LayerDirs) != 2 || got.Config.Config.User != "1000:1000" {
				t.Fatalf("image = %+v", got)
			}
			if b, _ := os.ReadFile(filepath.Join(got.LayerDirs[1], "name")); string(b) != tc.name {
				t.Errorf("top layer content %q", b)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(got.LayerDirs[1], "etc/old"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
				t.Errorf("whiteout of etc/old: %v mode %o", err, st.Mode)
			}
			if err := unix.Lstat(filepath.Join(got.LayerDirs[0], "home/user/f"), &st); err != nil || st.Uid != 1000 {
				t.Errorf("ownership of home/user/f: %v uid %d", err, st.Uid)
			}
			b := make([]byte, 2)
			if n, err := unix.Getxattr(filepath.Join(got.LayerDirs[1], "home"), "trusted.overlay.opaque", b); err != nil || string(b[:n]) != "y" {
				t.Errorf("opaque home: %q %v", b[:n], err)
			}
			if _, err := os.Stat(filepath.Join(got.LayerDirs[1], "wrong-arch")); err == nil {
				t.Errorf("pulled the wrong platform")
			}
			if len(got.RepoDigests) != 1 || !strings.Contains(got.RepoDigests[0], "@sha256:") {
				t.Errorf("repo digests = %v", got.RepoDigests)
			}
			// By digest reference, ID and ID prefix.
			for _, r := range []string{got.RepoDigests[0], id, strings.TrimPrefix(id, "sha256:")[:12]} {
				if g, err := s.Resolve(ctx(t), r); err != nil || g.ID != id {
					t.Errorf("resolve %s: %v", r, err)
				}
			}
		})
	}
	// The gzip base layer is shared by the two gzip images: unpacked once.
	imgs, _ := s.List()
	if len(imgs) != 4 {
		t.Fatalf("%d images", len(imgs))
	}
	if imgs[0].LayerDirs[0] == "" {
		t.Fatal("no layer dirs")
	}
	dirs := map[string]int{}
	for _, img := range imgs {
		for _, d := range img.LayerDirs {
			dirs[d]++
		}
	}
	shared := 0
	for _, n := range dirs {
		if n > 1 {
			shared++
		}
	}
	if shared != 1 {
		t.Errorf("%d layer dirs shared, want the gzip base layer shared by 2 images: %v", shared, dirs)
	}
}

func TestRemoveAndUsers(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	img := imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...))
	ref := reg.Push(t, "test/rm:a", img)
	reg.Push(t, "test/rm:b", img)
	s := newService(t, nil)
	id, err := s.Pull(ctx(t), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx(t), reg.Host+"/test/rm:b", nil); err != nil {
		t.Fatal(err)
	}
	im, _ := s.Resolve(ctx(t), id)
	if len(im.RepoTags) != 2 {
		t.Fatalf("tags = %v", im.RepoTags)
	}
	// Untag one tag: the image stays.
	if err := s.Remove(reg.Host + "/test/rm:a"); err != nil {
		t.Fatal(err)
	}
	im, err = s.Resolve(ctx(t), id)
	if err != nil || len(im.RepoTags) != 1 {
		t.Fatalf("after untag: %v %v", im, err)
	}
	if err := s.AddUser(id, "ctr1"); err != nil {
		t.Fatal(err)
	}
	dir := im.LayerDirs[0]
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if _, err := s.Resolve(ctx(t), id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("resolve removed image: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("layer of an image in use was removed: %v", err)
	}
	// The lease survives a restart of the service.
	s2, err := New(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("layer in use removed at start: %v", err)
	}
	if err := s2.RemoveUser("ctr1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("layer stays after its last user: %v", err)
	}
	if err := s2.AddUser(id, "ctr2"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("AddUser of a removed image: %v", err)
	}
	assertNothingLeft(t, s2)
}

func TestConcurrentPullsFetchLayersOnce(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	shared := imagetest.Layer(t, imagetest.Gzip, base...)
	var mu sync.Mutex
	fetches := map[string]int{}
	reg.Wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if i := strings.Index(r.URL.Path, "/blobs/"); i >= 0 && r.Method == http.MethodGet {
			mu.Lock()
			fetches[r.URL.Path[i+7:]]++
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
		next.ServeHTTP(w, r)
	}
	var refs []string
	for i := 0; i < 4; i++ {
		img := imagetest.Image(t, false, "", shared, imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: fmt.Sprint("f", i)}))
		refs = append(refs, reg.Push(t, fmt.Sprintf("test/c%d:v", i), img))
	}
	s := newService(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Pull(ctx(t), refs[i%4], nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches[imagetest.Digest(t, shared)]; n != 1 {
		t.Errorf("shared layer fetched %d times", n)
	}
}

func TestBadRegistries(t *testing.T) {
	_, base := baseLayers(t)
	cases := []struct {
		name  string
		code  error
		wrap  func(layerDigest string) func(http.ResponseWriter, *http.Request, http.Handler)
		layer func(t *testing.T) []imagetest.Entry
		ref   func(ref string) string
	}{
		{name: "wrong digest", code: errdefs.ErrDataLoss, wrap: func(d string) func(http.ResponseWriter, *http.Request, http.Handler) {
			return imagetest.BlobHandler(d, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				rec := &capture{header: http.Header{}}
				next.ServeHTTP(rec, r)
				b := rec.body
				b[len(b)/2] ^= 0xff
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.Write(b)
			})
		}},
		{name: "truncated blob", code: errdefs.ErrDataLoss, wrap: func(d string) func(http.ResponseWriter, *http.Request, http.Handler) {
			return imagetest.BlobHandler(d, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				rec := &capture{header: http.Header{}}
				next.ServeHTTP(rec, r)
				w.Header().Set("Content-Length", fmt.Sprint(len(rec.body)))
				w.Write(rec.body[:len(rec.body)/2])
			})
		}},
		{name: "blob 404", code: errdefs.ErrNotFound, wrap: func(d string) func(http.ResponseWriter, *http.Request, http.Handler) {
			return imagetest.BlobHandler(d, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"gone"}]}`, http.StatusNotFound)
			})
		}},
		{name: "unknown tag", code: errdefs.ErrNotFound, ref: func(ref string) string { return ref + "-nope" }},
		{name: "401 without credentials", code: errdefs.ErrUnauthenticated, wrap: func(string) func(http.ResponseWriter, *http.Request, http.Handler) {
			return basicAuth("u", "p")
		}},
		{name: "path escape", code: errdefs.ErrInvalidArgument, layer: func(t *testing.T) []imagetest.Entry {
			return []imagetest.Entry{{Name: "ok", Body: "x"}, {Name: "../../escape", Body: "x"}}
		}},
		{name: "symlink escape", code: errdefs.ErrInvalidArgument, layer: func(t *testing.T) []imagetest.Entry {
			return []imagetest.Entry{{Name: "l", Type: tar.TypeSymlink, Link: "../../.."}, {Name: "l/escape", Body: "x"}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := imagetest.StartRegistry(t)
			es := base
			if tc.layer != nil {
				es = tc.layer(t)
			}
			bad := imagetest.Layer(t, imagetest.Gzip, es...)
			good := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "good", Body: "g"})
			ref := reg.Push(t, "test/bad:v1", imagetest.Image(t, false, "", good, bad))
			if tc.wrap != nil {
				reg.Wrap = tc.wrap(imagetest.Digest(t, bad))
			}
			if tc.ref != nil {
				ref = tc.ref(ref)
			}
			s := newService(t, nil)
			_, err := s.Pull(ctx(t), ref, nil)
			if !errors.Is(err, tc.code) {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			t.Logf("error: %v", err)
			assertNothingLeft(t, s)
			imgs, _ := s.List()
			if len(imgs) != 0 {
				t.Errorf("images after a failed pull: %d", len(imgs))
			}
		})
	}
}

func TestAuth(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	ref := reg.Push(t, "test/auth:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	reg.Wrap = basicAuth("user", "secret")
	s := newService(t, nil)
	if _, err := s.Pull(ctx(t), ref, &Auth{Username: "user", Password: "wrong"}); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := s.Pull(ctx(t), ref, &Auth{Username: "user", Password: "secret"}); err != nil {
		t.Errorf("username/password: %v", err)
	}
	if _, err := s.Pull(ctx(t), ref, &Auth{Auth: "dXNlcjpzZWNyZXQ=", ServerAddress: reg.Host}); err != nil {
		t.Errorf("auth field: %v", err)
	}
	if _, err := s.Pull(ctx(t), ref, &Auth{Username: "user", Password: "secret", ServerAddress: "other.example"}); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("credentials for another server were sent: %v", err)
	}
}

func TestMirrorsFallThrough(t *testing.T) {
	up := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	up.Push(t, "library/app:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	dead := imagetest.StartRegistry(t)
	dead.Wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}
	prefixed := imagetest.StartRegistry(t)
	var hits int
	var mu sync.Mutex
	prefixed.Wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		p, ok := strings.CutPrefix(r.URL.Path, "/mirror/docker")
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("ns") != "docker.io" {
			http.Error(w, "no ns", http.StatusBadRequest)
			return
		}
		mu.Lock()
		hits++
		mu.Unlock()
		r.URL.Path = "/v2" + p
		next.ServeHTTP(w, r)
	}
	prefixed.Push(t, "library/app:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))

	s := newService(t, nil)
	dir := filepath.Join(s.opts.RegistryConfigDir, "docker.io")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`server = "http://%s"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
[host."http://%s/mirror/docker"]
  capabilities = ["pull", "resolve"]
  override_path = true
`, up.Host, dead.Host, prefixed.Host)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx(t), "app:v1", nil); err != nil {
		t.Fatal(err)
	}
	if hits == 0 {
		t.Errorf("the override_path mirror was not used")
	}
	img, err := s.Resolve(ctx(t), "docker.io/library/app:v1")
	if err != nil || img.RepoTags[0] != "docker.io/library/app:v1" {
		t.Fatalf("resolve: %v %v", img, err)
	}
	// Edits apply at the next pull: with only dead hosts the pull fails.
	conf = fmt.Sprintf("server = \"http://%s\"\n", dead.Host)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx(t), "app:v1", nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("pull with a dead registry: %v", err)
	}
}

func TestNoProgressCancels(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	l := imagetest.Layer(t, imagetest.None, base...)
	ref := reg.Push(t, "test/slow:v1", imagetest.Image(t, false, "", l))
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	reg.Wrap = imagetest.BlobHandler(imagetest.Digest(t, l), func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := &capture{header: http.Header{}}
		next.ServeHTTP(rec, r)
		w.Header().Set("Content-Length", fmt.Sprint(len(rec.body)))
		// A trickle: one byte now and then is not progress.
		for i := 0; i < len(rec.body); i++ {
			if _, err := w.Write(rec.body[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-stall:
				return
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	s := newService(t, func(o *Options) { o.ProgressTimeout = 500 * time.Millisecond })
	start := time.Now()
	_, err := s.Pull(ctx(t), ref, nil)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled after %v", d)
	}
	assertNothingLeft(t, s)

	// The caller's deadline is honoured too.
	s2 := newService(t, nil)
	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s2.Pull(c, ref, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}
	assertNothingLeft(t, s2)
}

type capture struct {
	header http.Header
	body   []byte
	code   int
}

func (c *capture) Header() http.Header         { return c.header }
func (c *capture) WriteHeader(code int)        { c.code = code }
func (c *capture) Write(b []byte) (int, error) { c.body = append(c.body, b...); return len(b), nil }

func basicAuth(user, pass string) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"login"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}
}

// TestStartRemovesCrashLeftovers: a crash mid-pull leaves a temp layer and
// a layer dir without a record; the next start removes both and keeps
// recorded layers.
func TestStartRemovesCrashLeftovers(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	ref := reg.Push(t, "test/crash:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	s := newService(t, nil)
	if _, err := s.Pull(ctx(t), ref, nil); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(s.tmpDir, "l123", "etc")
	stray := filepath.Join(s.layersDir, "0123456789abcdef", "bin")
	for _, d := range []string{half, stray} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := New(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(half), filepath.Dir(stray)} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s survived the start: %v", d, err)
		}
	}
	img, err := s2.Resolve(ctx(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(img.LayerDirs[0], "etc/passwd")); err != nil {
		t.Errorf("recorded layer lost at start: %v", err)
	}
}

// tokenAuth puts the registry behind the token flow: /token hands out a
// bearer token for a password (GET, basic auth) or an identity token (POST,
// refresh_token); registry calls need that token or a registry token.
func tokenAuth(reg *imagetest.Registry, user, pass, identity, registryToken string) func(http.ResponseWriter, *http.Request, http.Handler) {
	const issued = "issued-token"
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.URL.Path == "/token" {
			ok := false
			if u, p, basic := r.BasicAuth(); basic && u == user && p == pass {
				ok = true
			}
			if r.Method == http.MethodPost && r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token" && r.PostForm.Get("refresh_token") == identity {
				ok = true
			}
			if !ok {
				http.Error(w, "denied", http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token":%q,"access_token":%q}`, issued, issued)
			return
		}
		if a := r.Header.Get("Authorization"); a != "Bearer "+issued && a != "Bearer "+registryToken {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, reg.Host))
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}
}

func TestTokenFlow(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	ref := reg.Push(t, "test/token:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	reg.Wrap = tokenAuth(reg, "user", "secret", "id-token", "reg-token")
	for _, tc := range []struct {
		name string
		auth *Auth
		ok   bool
	}{
		{"anonymous", nil, false},
		{"wrong password", &Auth{Username: "user", Password: "nope"}, false},
		{"password", &Auth{Username: "user", Password: "secret"}, true},
		{"auth field", &Auth{Auth: "dXNlcjpzZWNyZXQ="}, true},
		{"identity token", &Auth{IdentityToken: "id-token"}, true},
		{"registry token", &Auth{RegistryToken: "reg-token"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, nil)
			_, err := s.Pull(ctx(t), ref, tc.auth)
			if tc.ok && err != nil {
				t.Errorf("pull: %v", err)
			}
			if !tc.ok && !errors.Is(err, errdefs.ErrUnauthenticated) {
				t.Errorf("pull: %v, want unauthenticated", err)
			}
		})
	}
}

// TestWaitingOnAnotherPullIsProgress: a pull waiting for a layer another
// pull is fetching is not cancelled for lack of progress while bytes arrive.
func TestWaitingOnAnotherPullIsProgress(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	big := imagetest.Layer(t, imagetest.None, imagetest.Entry{Name: "big", Body: strings.Repeat("0123456789abcdef", 1<<17)})
	ref := reg.Push(t, "test/slowshared:v1", imagetest.Image(t, false, "", big))
	reg.Wrap = imagetest.BlobHandler(imagetest.Digest(t, big), func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := &capture{header: http.Header{}}
		next.ServeHTTP(rec, r)
		w.Header().Set("Content-Length", fmt.Sprint(len(rec.body)))
		for b := rec.body; len(b) > 0; {
			n := min(len(b), 128<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			b = b[n:]
			time.Sleep(60 * time.Millisecond)
		}
	})
	s := newService(t, func(o *Options) { o.ProgressTimeout = 400 * time.Millisecond })
	errs := make(chan error, 2)
	go func() { _, err := s.Pull(ctx(t), ref, nil); errs <- err }()
	time.Sleep(100 * time.Millisecond)
	go func() { _, err := s.Pull(ctx(t), ref, nil); errs <- err }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Errorf("pull %d: %v", i, err)
		}
	}
}

func TestTLSRegistryCA(t *testing.T) {
	reg := imagetest.StartTLSRegistry(t)
	_, base := baseLayers(t)
	reg.Push(t, "test/tls:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	s := newService(t, nil)
	dir := filepath.Join(s.opts.RegistryConfigDir, "secure.test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), reg.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conf string
		ok   bool
	}{
		{fmt.Sprintf("server = \"https://%s\"\n", reg.Host), false},
		{fmt.Sprintf("server = \"https://%s\"\nca = \"ca.pem\"\n", reg.Host), true},
		{fmt.Sprintf("server = \"https://%s\"\nskip_verify = true\n", reg.Host), true},
		{fmt.Sprintf("[host.\"https://%s\"]\n  ca = [\"ca.pem\"]\n", reg.Host), true},
	} {
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := s.Pull(ctx(t), "secure.test/test/tls:v1", nil)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want success %v", tc.conf, err, tc.ok)
		}
	}
}

// TestPullOnlyMirrorServesBlobs: a mirror without resolve does not resolve
// tags, but the content is fetched from it before the registry.
func TestPullOnlyMirrorServesBlobs(t *testing.T) {
	up := imagetest.StartRegistry(t)
	mirror := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	img := imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...))
	up.Push(t, "library/app:v1", img)
	mirror.Push(t, "library/app:v1", img)
	var upBlobs, mirrorTags, mirrorBlobs int
	var mu sync.Mutex
	count := func(blobs, tags *int) func(http.ResponseWriter, *http.Request, http.Handler) {
		return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			mu.Lock()
			if strings.Contains(r.URL.Path, "/blobs/") && blobs != nil {
				*blobs++
			}
			if strings.HasSuffix(r.URL.Path, "/manifests/v1") && tags != nil {
				*tags++
			}
			mu.Unlock()
			next.ServeHTTP(w, r)
		}
	}
	up.Wrap = count(&upBlobs, nil)
	mirror.Wrap = count(&mirrorBlobs, &mirrorTags)
	s := newService(t, nil)
	dir := filepath.Join(s.opts.RegistryConfigDir, "docker.io")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\"]\n", up.Host, mirror.Host)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx(t), "app:v1", nil); err != nil {
		t.Fatal(err)
	}
	if mirrorTags != 0 || mirrorBlobs == 0 || upBlobs != 0 {
		t.Errorf("mirror tags %d blobs %d, registry blobs %d: want blobs from the mirror only", mirrorTags, mirrorBlobs, upBlobs)
	}
}

func TestClientCertificate(t *testing.T) {
	reg := imagetest.StartMTLSRegistry(t)
	_, base := baseLayers(t)
	reg.Push(t, "test/mtls:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	s := newService(t, nil)
	dir := filepath.Join(s.opts.RegistryConfigDir, "mtls.test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ca.pem": reg.CAPEM, "client.crt": reg.ClientCertPEM, "client.key": reg.ClientKeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for conf, ok := range map[string]bool{
		"ca = \"ca.pem\"\n": false,
		"ca = \"ca.pem\"\nclient = [\"client.crt\", \"client.key\"]\n": true,
	} {
		full := fmt.Sprintf("server = \"https://%s\"\n%s", reg.Host, conf)
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(full), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pull(ctx(t), "mtls.test/test/mtls:v1", nil); (err == nil) != ok {
			t.Errorf("%s: err = %v, want success %v", conf, err, ok)
		}
	}
}

func TestFsInfo(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	ref := reg.Push(t, "test/fs:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	cdir := filepath.Join(t.TempDir(), "containers")
	if err := os.MkdirAll(filepath.Join(cdir, "c1", "upper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cdir, "c1", "upper", "f"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newService(t, func(o *Options) { o.ContainerLayersDir = cdir })
	img, c := s.FsInfo()
	if img.UsedBytes != 0 || img.InodesUsed != 0 || img.Mountpoint != s.LayersDir() {
		t.Errorf("empty store: %+v", img)
	}
	if c == nil || c.Mountpoint != cdir || c.UsedBytes < 64<<10 || c.InodesUsed != 4 {
		t.Errorf("containers: %+v", c)
	}
	if _, err := s.Pull(ctx(t), ref, nil); err != nil {
		t.Fatal(err)
	}
	img, _ = s.FsInfo()
	im, _ := s.Resolve(ctx(t), ref)
	if img.UsedBytes != im.Size || img.InodesUsed != 8 { // 9 entries, one a hard link
		t.Errorf("after a pull: %+v, image size %d", img, im.Size)
	}
}

func TestAddUserWithIsAtomic(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	ref := reg.Push(t, "test/with:a", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	s := newService(t, nil)
	id, err := s.Pull(ctx(t), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	bucket := []byte("caller")
	if err := s.AddUserWith(id, "ctr1", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.Put([]byte("ctr1"), []byte("record"))
	}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	_ = s.db.View(func(tx *bolt.Tx) error {
		got = tx.Bucket(bucket).Get([]byte("ctr1"))
		return nil
	})
	if string(got) != "record" {
		t.Errorf("caller's record = %q", got)
	}
	// The caller's write fails: no lease either.
	boom := errors.New("boom")
	if err := s.AddUserWith(id, "ctr2", func(*bolt.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	s2, err := New(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.users["ctr2"]; ok {
		t.Error("lease of a failed AddUserWith was stored")
	}
	if _, ok := s.users["ctr2"]; ok {
		t.Error("lease of a failed AddUserWith is in memory")
	}
	if _, ok := s2.users["ctr1"]; !ok {
		t.Error("lease of ctr1 not stored")
	}
	if err := s2.RemoveUser("ctr1"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Remove(id); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, s2)
}
