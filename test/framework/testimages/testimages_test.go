package testimages

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"

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
