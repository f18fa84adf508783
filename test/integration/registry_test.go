package integration

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-dev/berth/test/framework"
)

// layerFile is one tar entry of one layer, as a puller sees it before
// applying whiteouts.
type layerFile struct {
	layer int
	hdr   tar.Header
	data  []byte
}

type fetched struct {
	ref    string
	desc   *remote.Descriptor
	img    v1.Image
	cfg    *v1.ConfigFile
	digest v1.Hash // manifest digest of the host platform's image
	files  map[string][]layerFile
}

// fetch pulls ref from the local registry with ggcr, as a client that knows
// the local naming does, resolving an index to the host platform.
func fetch(t *testing.T, reg *framework.Registry, ref string) *fetched {
	t.Helper()
	n, err := name.ParseReference(reg.LocalRef(t, ref), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(n, remote.WithContext(framework.Context(t)))
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	img, err := desc.Image() // picks linux/GOARCH from an index
	if err != nil {
		t.Fatalf("image of %s: %v", ref, err)
	}
	f := &fetched{ref: ref, desc: desc, img: img, files: map[string][]layerFile{}}
	if f.cfg, err = img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	if f.digest, err = img.Digest(); err != nil {
		t.Fatal(err)
	}
	return f
}

// readLayers reads every layer's tar (verifying digests on the way).
func (f *fetched) readLayers(t *testing.T) {
	t.Helper()
	layers, err := f.img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatalf("%s layer %d: %v", f.ref, i, err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s layer %d: %v", f.ref, i, err)
			}
			var data []byte
			if h.Typeflag == tar.TypeReg && h.Size < 1<<20 {
				data, _ = io.ReadAll(tr)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			f.files[name] = append(f.files[name], layerFile{layer: i, hdr: *h, data: data})
		}
		rc.Close()
	}
}

// top is the last layer's entry of name.
func (f *fetched) top(t *testing.T, name string) layerFile {
	t.Helper()
	e := f.files[name]
	if len(e) == 0 {
		t.Fatalf("%s has no /%s", f.ref, name)
	}
	return e[len(e)-1]
}

func TestRegistryServesCritestImages(t *testing.T) {
	reg := framework.StartRegistry(t)
	arch := runtime.GOARCH
	const e2e = "registry.k8s.io/e2e-test-images/"
	const cri = "gcr.io/k8s-staging-cri-tools/"

	// Every Linux image critest v1.37.0 pulls (pkg/validate, pkg/framework,
	// pkg/benchmark), but test-image-digest, pinned by an unrebuildable digest.
	users := map[string]string{
		e2e + "busybox:1.29-2":                               "",
		cri + "test-image-user-uid":                          "1002",
		cri + "test-image-user-username":                     "www-data",
		cri + "test-image-user-uid-group":                    "1003:1004",
		cri + "test-image-user-username-group":               "www-data:1004",
		cri + "test-image-predefined-group":                  "1000",
		cri + "test-image-latest":                            "",
		cri + "test-image-1:latest":                          "",
		cri + "test-image-2:latest":                          "",
		cri + "test-image-3:latest":                          "",
		cri + "test-image-tags:1":                            "",
		cri + "test-image-tags:2":                            "",
		cri + "test-image-tags:3":                            "",
		cri + "test-image-tag:test":                          "",
		cri + "test-image-tag:all":                           "",
		e2e + "nginx:1.14-2":                                 "",
		cri + "hostnet-nginx-" + arch:                        "",
		e2e + "httpd:2.4.39-4":                               "",
		e2e + "nonewprivs:1.3":                               "",
		"registry.k8s.io/pause:3.9":                          "65535:65535",
		"k8s.gcr.io/pause:3.9":                               "65535:65535",
		"public.ecr.aws/docker/library/busybox:1.35.0-glibc": "",
		"public.ecr.aws/docker/library/busybox:1-uclibc":     "",
		"public.ecr.aws/docker/library/busybox:1":            "",
		"public.ecr.aws/docker/library/busybox:1-glibc":      "",
		"public.ecr.aws/docker/library/busybox:1-musl":       "",
	}
	got := map[string]*fetched{}
	for ref, user := range users {
		f := fetch(t, reg, ref)
		got[ref] = f
		if f.cfg.OS != "linux" || f.cfg.Architecture != arch {
			t.Errorf("%s: platform %s/%s, want linux/%s", ref, f.cfg.OS, f.cfg.Architecture, arch)
		}
		if f.cfg.Config.User != user {
			t.Errorf("%s: User %q, want %q", ref, f.cfg.Config.User, user)
		}
	}

	// Same image under several tags or registries: one manifest, one ID.
	for _, same := range [][]string{
		{cri + "test-image-tags:1", cri + "test-image-tags:2", cri + "test-image-tags:3"},
		{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
	} {
		for _, ref := range same[1:] {
			if got[ref].digest != got[same[0]].digest {
				t.Errorf("%s and %s should be the same image: %s vs %s", same[0], ref, got[same[0]].digest, got[ref].digest)
			}
		}
	}
	// Different images: different config digests (image IDs).
	ids := map[v1.Hash]string{}
	for _, ref := range []string{cri + "test-image-1:latest", cri + "test-image-2:latest", cri + "test-image-3:latest",
		cri + "test-image-latest", cri + "test-image-tag:test", cri + "test-image-tag:all", cri + "test-image-tags:1"} {
		id, err := got[ref].img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s have the same image ID %s", ref, other, id)
		}
		ids[id] = ref
	}
	// critest's images are multi-arch: a puller must choose the host's entry.
	for _, ref := range []string{e2e + "busybox:1.29-2", "registry.k8s.io/pause:3.9", cri + "test-image-tags:1"} {
		if !got[ref].desc.MediaType.IsIndex() {
			t.Errorf("%s: media type %s, want an index", ref, got[ref].desc.MediaType)
			continue
		}
		idx, err := got[ref].desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var archs []string
		for _, m := range im.Manifests {
			archs = append(archs, m.Platform.Architecture)
		}
		if len(archs) < 2 || !strings.Contains(strings.Join(archs, ","), arch) {
			t.Errorf("%s: index platforms %v, want %s and another", ref, archs, arch)
		}
	}

	t.Run("busybox", func(t *testing.T) {
		f := got[e2e+"busybox:1.29-2"]
		f.readLayers(t)
		if n := len(f.cfg.RootFS.DiffIDs); n < 4 {
			t.Errorf("busybox has %d layers, want at least 4", n)
		}
		if c := f.cfg.Config.Cmd; len(c) != 1 || c[0] != "sh" {
			t.Errorf("busybox Cmd %q, want [sh]", c)
		}
		// The dynamic busybox with its loader, applets as hard links.
		f.top(t, "lib64/ld-linux-x86-64.so.2")
		bb := f.top(t, "bin/busybox")
		if bb.hdr.Mode&0o111 == 0 {
			t.Errorf("bin/busybox mode %o is not executable", bb.hdr.Mode)
		}
		for _, applet := range []string{"sh", "ls", "id", "top", "sleep", "pidof", "wget", "hostname", "cat"} {
			h := f.top(t, "bin/"+applet).hdr
			if h.Typeflag != tar.TypeLink || h.Linkname != "bin/busybox" {
				t.Errorf("bin/%s: type %c link %q, want a hard link to bin/busybox", applet, h.Typeflag, h.Linkname)
			}
		}
		// Whiteouts in the top layer delete a file and hide a directory.
		wo := f.top(t, "etc/berth/.wh.remove-me")
		if orig := f.top(t, "etc/berth/remove-me"); orig.layer >= wo.layer {
			t.Errorf("whiteout of etc/berth/remove-me in layer %d, not above the file (layer %d)", wo.layer, orig.layer)
		}
		op := f.top(t, "var/cache/berth/.wh..wh..opq")
		if old := f.top(t, "var/cache/berth/old-1"); old.layer >= op.layer {
			t.Errorf("opaque marker in layer %d, not above var/cache/berth/old-1 (layer %d)", op.layer, old.layer)
		}
		// Files owned by other users than root.
		for path, uid := range map[string]int{"home/berth1/.profile": 4001, "var/cache/berth/new": 4002, "var/www": 33} {
			if h := f.top(t, path).hdr; h.Uid != uid {
				t.Errorf("/%s owned by %d, want %d", path, h.Uid, uid)
			}
		}
		if h := f.top(t, "tmp").hdr; h.Mode&0o1777 != 0o1777 {
			t.Errorf("/tmp mode %o, want 1777", h.Mode)
		}
		passwd := string(f.top(t, "etc/passwd").data)
		for _, u := range []string{"root:x:0:0:", "nobody:x:65534:", "www-data:x:33:", "berth1:x:4001:"} {
			if !strings.Contains(passwd, u) {
				t.Errorf("/etc/passwd lacks %q:\n%s", u, passwd)
			}
		}
	})

	t.Run("predefined-group", func(t *testing.T) {
		f := got[cri+"test-image-predefined-group"]
		f.readLayers(t)
		if g := string(f.top(t, "etc/group").data); !strings.Contains(g, "group-defined-in-image:x:50000:default-user") {
			t.Errorf("/etc/group lacks group-defined-in-image:\n%s", g)
		}
		if p := string(f.top(t, "etc/passwd").data); !strings.Contains(p, "default-user:x:1000:1000:") {
			t.Errorf("/etc/passwd lacks default-user:\n%s", p)
		}
	})

	t.Run("marker files", func(t *testing.T) {
		for ref, file := range map[string]string{
			cri + "test-image-1:latest": "test-image-1", cri + "test-image-tag:all": "all",
			cri + "test-image-tags:2": "same-image", cri + "test-image-latest": "test-image-latest",
		} {
			f := got[ref]
			f.readLayers(t)
			f.top(t, file)
		}
	})

	t.Run("nginx", func(t *testing.T) {
		for ref, port := range map[string]string{e2e + "nginx:1.14-2": "80", cri + "hostnet-nginx-" + arch: "12003"} {
			f := got[ref]
			f.readLayers(t)
			if h := f.top(t, "usr/sbin/nginx").hdr; h.Typeflag != tar.TypeLink && h.Typeflag != tar.TypeReg {
				t.Errorf("%s: /usr/sbin/nginx is type %c", ref, h.Typeflag)
			}
			if c := strings.Join(f.cfg.Config.Cmd, " "); c != "nginx -g daemon off;" {
				t.Errorf("%s: Cmd %q", ref, c)
			}
			if conf := string(f.top(t, "etc/nginx/conf.d/default.conf").data); !strings.Contains(conf, "listen       "+port+";") {
				t.Errorf("%s: default.conf does not listen on %s:\n%s", ref, port, conf)
			}
			f.top(t, "usr/share/nginx/html/index.html")
		}
	})

	t.Run("httpd and nonewprivs", func(t *testing.T) {
		f := got[e2e+"httpd:2.4.39-4"]
		f.readLayers(t)
		f.top(t, "usr/local/bin/httpd-foreground")
		f.top(t, "usr/local/apache2/htdocs/index.html")
		if f.cfg.Config.StopSignal != "SIGWINCH" || f.cfg.Config.WorkingDir != "/usr/local/apache2" {
			t.Errorf("httpd config: StopSignal %q WorkingDir %q", f.cfg.Config.StopSignal, f.cfg.Config.WorkingDir)
		}
		f = got[e2e+"nonewprivs:1.3"]
		f.readLayers(t)
		if h := f.top(t, "usr/local/bin/nnp").hdr; h.Mode&0o4000 == 0 || h.Uid != 0 {
			t.Errorf("nnp is mode %o uid %d, want setuid root", h.Mode, h.Uid)
		}
		if e := f.cfg.Config.Entrypoint; len(e) != 1 || e[0] != "/usr/local/bin/nnp" {
			t.Errorf("nonewprivs Entrypoint %q", e)
		}
	})

	t.Run("pause", func(t *testing.T) {
		f := got["registry.k8s.io/pause:3.9"]
		f.readLayers(t)
		if e := f.cfg.Config.Entrypoint; len(e) != 1 || e[0] != "/pause" {
			t.Errorf("pause Entrypoint %q", e)
		}
		f.top(t, "pause")
	})
}

func TestRegistryBenchAndFormatImages(t *testing.T) {
	reg := framework.StartRegistry(t)

	big := fetch(t, reg, "berth.test/bench/big:latest")
	layers, err := big.img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 5 {
		t.Errorf("bench image has %d layers, want 5", len(layers))
	}
	var total int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total < 90<<20 || total > 130<<20 {
		t.Errorf("bench image layers add up to %d MiB compressed, want about 100", total>>20)
	}
	// Pulling it streams the blobs; digests are verified by ggcr on read.
	rc, err := layers[4].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n < 15<<20 {
		t.Errorf("read bench layer: %d bytes, %v", n, err)
	}

	mixed := fetch(t, reg, "berth.test/formats/mixed:latest")
	m, err := mixed.img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[types.MediaType]bool{}
	for _, l := range m.Layers {
		kinds[l.MediaType] = true
	}
	for _, want := range []types.MediaType{types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer} {
		if !kinds[want] {
			t.Errorf("mixed image lacks a %s layer: %v", want, kinds)
		}
	}
	mixed.readLayers(t) // decompresses gzip and zstd and checks every digest
	mixed.top(t, "bin/busybox")
	for i := range 4 {
		if l := mixed.top(t, fmt.Sprintf("etc/berth/format-layer-%d", i)).layer; l != i {
			t.Errorf("etc/berth/format-layer-%d in layer %d", i, l)
		}
	}
	bb := fetch(t, reg, "busybox")
	if mixed.cfg.RootFS.DiffIDs[1] == bb.cfg.RootFS.DiffIDs[1] {
		t.Errorf("mixed image shares busybox's layers: its zstd layer would never be unpacked")
	}

	full := fetch(t, reg, "berth.test/config/full:latest")
	c := full.cfg.Config
	if c.User != "berth1" || c.WorkingDir != "/app" || len(c.Entrypoint) != 2 || len(c.Cmd) != 1 || len(c.Volumes) != 1 {
		t.Errorf("full config image: %+v", c)
	}
}

// The hosts.toml dir sends each upstream registry to its own local path
// prefix; a client following it (override_path) reaches the right manifest.
func TestRegistryHostsDirAndPush(t *testing.T) {
	reg := framework.StartRegistry(t)
	for _, host := range []string{"docker.io", "registry.k8s.io", "gcr.io", "k8s.gcr.io", "public.ecr.aws", "quay.io", "berth.test"} {
		b, err := os.ReadFile(filepath.Join(reg.HostsDir, host, "hosts.toml"))
		if err != nil {
			t.Fatalf("hosts.toml of %s: %v", host, err)
		}
		s := string(b)
		for _, want := range []string{
			`server = "http://` + reg.Addr + `/v2/` + host + `"`,
			`[host."http://` + reg.Addr + `/v2/` + host + `"]`,
			`capabilities = ["pull", "resolve"]`,
			`override_path = true`,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s/hosts.toml lacks %q:\n%s", host, want, s)
			}
		}
	}

	// What a mirror client does for registry.k8s.io/pause:3.9 and for
	// k8s.gcr.io/pause:3.9: same path, other prefix, same manifest.
	var digests []string
	for _, u := range []string{
		"http://" + reg.Addr + "/v2/registry.k8s.io/pause/manifests/3.9",
		"http://" + reg.Addr + "/v2/k8s.gcr.io/pause/manifests/3.9",
	} {
		req, _ := http.NewRequestWithContext(framework.Context(t), http.MethodHead, u, nil)
		req.Header.Set("Accept", string(types.DockerManifestList)+", "+string(types.OCIImageIndex))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD %s: %s", u, resp.Status)
		}
		digests = append(digests, resp.Header.Get("Docker-Content-Digest"))
	}
	if digests[0] == "" || digests[0] != digests[1] {
		t.Errorf("pause:3.9 digests through the two prefixes: %q", digests)
	}
	// Docker Hub's short names live under docker.io.
	resp, err := http.Head("http://" + reg.Addr + "/v2/docker.io/library/busybox/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("docker.io/library/busybox:latest: %s", resp.Status)
	}
	// Same path on a registry the image is not on: not found.
	resp, err = http.Get("http://" + reg.Addr + "/v2/quay.io/pause/manifests/3.9")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("quay.io/pause:3.9: %s, want 404", resp.Status)
	}

	// A custom image pushed by a test is served like the fixtures.
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	reg.PushImage(t, "berth.test/custom/app:1", img)
	back := fetch(t, reg, "berth.test/custom/app:1")
	want, _ := img.Digest()
	if back.digest != want {
		t.Errorf("pushed %s, got back %s", want, back.digest)
	}
	// Building on a fixture: busybox plus a layer.
	base := reg.Image(t, "busybox")
	extra, err := random.Layer(512, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	reg.PushImage(t, "berth.test/custom/busybox-plus:1", derived)
	if n := len(fetch(t, reg, "berth.test/custom/busybox-plus:1").cfg.RootFS.DiffIDs); n < 5 {
		t.Errorf("derived image has %d layers", n)
	}
}

// The fault options of StartRegistry do what the tests of failing pulls
// expect of them, seen from ggcr's client.
func TestRegistryFaults(t *testing.T) {
	const ref = "registry.k8s.io/pause:3.9"
	digestOf := func(t *testing.T) string {
		reg := framework.StartRegistry(t)
		layers, err := reg.Image(t, ref).Layers()
		if err != nil {
			t.Fatal(err)
		}
		d, err := layers[0].Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	layer := digestOf(t)
	readLayer := func(t *testing.T, reg *framework.Registry, opts ...remote.Option) error {
		n, err := name.ParseReference(reg.LocalRef(t, ref), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(n, append([]remote.Option{remote.WithContext(framework.Context(t))}, opts...)...)
		if err != nil {
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		rc, err := layers[0].Compressed()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	}

	t.Run("counts", func(t *testing.T) {
		reg := framework.StartRegistry(t)
		if err := readLayer(t, reg); err != nil {
			t.Fatal(err)
		}
		if n := reg.BlobGets(layer); n != 1 {
			t.Errorf("BlobGets = %d after one read", n)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		err := readLayer(t, framework.StartRegistry(t, framework.WithCorruptBlob(layer)))
		if err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("corrupt blob: %v, want a digest mismatch", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		if err := readLayer(t, framework.StartRegistry(t, framework.WithTruncatedBlob(layer, 100))); err == nil {
			t.Error("truncated blob read without error")
		}
	})
	t.Run("missing", func(t *testing.T) {
		err := readLayer(t, framework.StartRegistry(t, framework.WithMissingBlob(layer)))
		var te *transport.Error
		if !errors.As(err, &te) || te.StatusCode != http.StatusNotFound {
			t.Errorf("missing blob: %v, want 404", err)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		reg := framework.StartRegistry(t, framework.WithStalledBlob(layer, 10))
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := readLayer(t, reg, remote.WithContext(ctx))
		if err == nil || time.Since(start) > 5*time.Second {
			t.Errorf("stalled blob: %v after %v", err, time.Since(start))
		}
	})
	t.Run("trickled", func(t *testing.T) {
		reg := framework.StartRegistry(t, framework.WithTrickledBlob(layer, 10, 100*time.Millisecond))
		resp, err := http.Get("http://" + reg.Addr + "/v2/registry.k8s.io/pause/blobs/" + layer)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got := 0
		deadline := time.Now().Add(550 * time.Millisecond)
		buf := make([]byte, 4096)
		for time.Now().Before(deadline) {
			n, err := resp.Body.Read(buf)
			got += n
			if err != nil {
				break
			}
		}
		if got < 12 || got > 16 {
			t.Errorf("read %d bytes in 550ms, want 10 then one per 100ms", got)
		}
	})
	t.Run("basic auth", func(t *testing.T) {
		reg := framework.StartRegistry(t, framework.WithBasicAuth("alice", "s3cret"))
		if err := readLayer(t, reg); err == nil {
			t.Error("pull without credentials succeeded")
		}
		if err := readLayer(t, reg, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
			t.Errorf("pull with credentials: %v", err)
		}
	})
	t.Run("token auth", func(t *testing.T) {
		auth := framework.TokenAuth{User: "bob", Password: "pw", IdentityToken: "id-tok", RegistryToken: "reg-tok"}
		reg := framework.StartRegistry(t, framework.WithTokenAuth(auth))
		err := readLayer(t, reg)
		var te *transport.Error
		if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
			t.Errorf("pull without credentials: %v, want 401", err)
		}
		if err := readLayer(t, reg, remote.WithAuth(&authn.Basic{Username: "bob", Password: "wrong"})); err == nil {
			t.Error("pull with a wrong password succeeded")
		}
		for name, cfg := range map[string]authn.AuthConfig{
			"password":       {Username: "bob", Password: "pw"},
			"identity token": {IdentityToken: "id-tok"},
			"registry token": {RegistryToken: "reg-tok"},
		} {
			if err := readLayer(t, reg, remote.WithAuth(authn.FromConfig(cfg))); err != nil {
				t.Errorf("pull with %s: %v", name, err)
			}
		}
	})
	t.Run("escaping layer", func(t *testing.T) {
		reg := framework.StartRegistry(t)
		bad := framework.TarLayer(t,
			framework.TarFile{Name: "etc/", Type: tar.TypeDir},
			framework.TarFile{Name: "../escape", Body: "outside"},
			framework.TarFile{Name: "link", Type: tar.TypeSymlink, Linkname: "/tmp"},
			framework.TarFile{Name: "link/through", Body: "via symlink"},
		)
		img, err := mutate.AppendLayers(reg.Image(t, "busybox"), bad)
		if err != nil {
			t.Fatal(err)
		}
		reg.PushImage(t, "berth.test/bad/escape:1", img)
		f := fetch(t, reg, "berth.test/bad/escape:1")
		f.readLayers(t)
		f.top(t, "../escape")
	})
}
