package testimages

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestLocalRepo(t *testing.T) {
	for ref, want := range map[string]string{
		"busybox":                                 "docker.io/library/busybox",
		"docker.io/library/busybox:1.36":          "docker.io/library/busybox",
		"registry.k8s.io/pause:3.9":               "registry.k8s.io/pause",
		"k8s.gcr.io/pause:3.9":                    "k8s.gcr.io/pause",
		"gcr.io/k8s-staging-cri-tools/test-image": "gcr.io/k8s-staging-cri-tools/test-image",
		"public.ecr.aws/docker/library/busybox:1": "public.ecr.aws/docker/library/busybox",
	} {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := LocalRepo(r.Context()); got != want {
			t.Errorf("LocalRepo(%s) = %s, want %s", ref, got, want)
		}
	}
}

func TestHostsTOML(t *testing.T) {
	var f struct {
		Server       string `toml:"server"`
		OverridePath bool   `toml:"override_path"`
		Host         map[string]struct {
			Capabilities []string `toml:"capabilities"`
			OverridePath bool     `toml:"override_path"`
		} `toml:"host"`
	}
	md, err := toml.Decode(HostsTOML("registry.k8s.io", "127.0.0.1:5000"), &f)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) != 0 {
		t.Errorf("keys not in containerd's format: %v", u)
	}
	const local = "http://127.0.0.1:5000/v2/registry.k8s.io"
	if f.Server != local || !f.OverridePath {
		t.Errorf("server %q override_path %v, want %q true", f.Server, f.OverridePath, local)
	}
	h, ok := f.Host[local]
	if !ok || !h.OverridePath || len(h.Capabilities) != 2 || len(f.Host) != 1 {
		t.Errorf("hosts: %+v", f.Host)
	}
}

// Layers come out byte for byte the same (digests are stable across
// machines and runs) and name every parent directory before its children.
func TestTarBytes(t *testing.T) {
	files := []file{text("a/b/c", "x"), whiteout("a/b/gone"), hardlink("a/l", "a/b/c"), dir("d", 0o700, 1, 2)}
	one, err := tarBytes(files)
	if err != nil {
		t.Fatal(err)
	}
	two, _ := tarBytes(files)
	if !bytes.Equal(one, two) {
		t.Error("tarBytes is not deterministic")
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(one))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
		names = append(names, h.Name)
	}
	want := []string{"a/", "a/b/", "a/b/c", "a/b/.wh.gone", "a/l", "d/"}
	if len(names) != len(want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("entries %q, want %q", names, want)
			break
		}
	}
}

// A layout of another key goes only when no Build has returned it for
// staleAfter: a test binary of other sources may be serving it.
func TestRemoveStale(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"current", "recent", "old", ".build-x"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-staleAfter - time.Minute)
	for _, d := range []string{"current", "old", ".build-x"} {
		if err := os.Chtimes(filepath.Join(root, d), long, long); err != nil {
			t.Fatal(err)
		}
	}
	removeStale(root, "current")
	for d, want := range map[string]bool{"current": true, "recent": true, "old": false, ".build-x": true} {
		if _, err := os.Stat(filepath.Join(root, d)); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", d, err == nil, want)
		}
	}
	markUsed(filepath.Join(root, "current"))
	removeStale(root, "other")
	if _, err := os.Stat(filepath.Join(root, "current")); err != nil {
		t.Errorf("a layout just used was removed: %v", err)
	}
}

// The key is of the sources compiled in, and the same on every call.
func TestCacheKey(t *testing.T) {
	a, err := cacheKey()
	if err != nil {
		t.Fatalf("cacheKey (hack/install-deps.sh installs busybox, procps, util-linux): %v", err)
	}
	b, err := cacheKey()
	if err != nil || a != b || len(a) != 16 {
		t.Errorf("cacheKey %q then %q, %v", a, b, err)
	}
	if _, err := ownSources.ReadFile("catalog.go"); err != nil {
		t.Errorf("sources not embedded: %v", err)
	}
}
