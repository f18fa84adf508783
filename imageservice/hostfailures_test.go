package imageservice

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/imagetest"
)

// TestPullErrorNamesHostsInOrder: a pull that fails everywhere says in one
// sentence what the registry answered, after what each mirror did, in the
// order they were tried; without request URLs, redacted queries or the
// registry's details map.
func TestPullErrorNamesHostsInOrder(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	reg.Push(t, "library/app:v1", imagetest.Image(t, false, "", imagetest.Layer(t, imagetest.Gzip, base...)))
	// Answer a missing tag as the distribution registry does.
	reg.Wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, "/manifests/1.0") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"1.0"}}]}`)
			return
		}
		next.ServeHTTP(w, r)
	}
	empty := imagetest.StartRegistry(t)
	s := newService(t, nil)
	dir := filepath.Join(s.opts.RegistryConfigDir, "docker.io")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`server = "http://%[1]s"
[host."http://%[2]s"]
  capabilities = ["pull", "resolve"]
[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, reg.Host, empty.Host)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Pull(ctx(t), "app:1.0", nil)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("pull of a missing tag: %v, want ErrNotFound", err)
	}
	want := fmt.Sprintf("pull docker.io/library/app:1.0: registry http://%[1]s/v2 answered 404 manifest unknown, "+
		"after mirror http://%[2]s/v2 answered 404 Unknown name, "+
		"then mirror http://127.0.0.1:1/v2 failed: dial tcp 127.0.0.1:1: connect: connection refused, "+
		"then mirror http://%[1]s/v2 answered the same", reg.Host, empty.Host)
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}

	// One host: what it said, once.
	_, err = s.Pull(ctx(t), reg.Host+"/library/app:1.0", nil)
	want = fmt.Sprintf("pull %[1]s/library/app:1.0: registry http://%[1]s/v2 answered 404 manifest unknown", reg.Host)
	if err == nil || err.Error() != want {
		t.Errorf("message:\n got %v\nwant %s", err, want)
	}
}

// TestPullErrorOfAnIndex: the index resolves but its manifest for this
// platform is missing.
func TestPullErrorOfAnIndex(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	_, base := baseLayers(t)
	img := imagetest.Image(t, true, "", imagetest.Layer(t, imagetest.Gzip, base...))
	other := imagetest.Image(t, true, "", imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "other"}))
	ref := reg.PushIndex(t, "test/idx:v1", imagetest.Index(t, img, other))
	missing := "/manifests/" + imagetest.Digest(t, img)
	reg.Wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, missing) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`)
			return
		}
		next.ServeHTTP(w, r)
	}
	s := newService(t, nil)
	_, err := s.Pull(ctx(t), ref, nil)
	want := fmt.Sprintf("pull %[1]s: registry http://%[2]s/v2 sent the image index, then registry http://%[2]s/v2 answered 404 manifest unknown", ref, reg.Host)
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != want {
		t.Errorf("message:\n got %v\nwant %s", err, want)
	}
}

func TestPrintable(t *testing.T) {
	if got := printable("a\nb\x00c"); got != "a b c" {
		t.Errorf("printable = %q", got)
	}
	if got := printable(strings.Repeat("x", 500)); len([]rune(got)) != 201 {
		t.Errorf("printable kept %d runes", len([]rune(got)))
	}
}
