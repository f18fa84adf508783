package testimages

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Upstream registries the fixtures stand in for. critest pulls from the
// first five; berth.test is the fixtures' own.
const (
	k8sRegistry    = "registry.k8s.io"
	e2e            = k8sRegistry + "/e2e-test-images/"
	criTools       = "gcr.io/k8s-staging-cri-tools/"
	ecrLibrary     = "public.ecr.aws/docker/library/"
	dockerLibrary  = "docker.io/library/"
	fixtureHost    = "berth.test"
	defaultPath    = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	foreignArchAlt = "amd64"
)

// Users and groups of the busybox images: those of the busybox image on
// Docker Hub plus two numeric users who own files in the layers.
const (
	passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
berth1:x:4001:4001:berth test user 1:/home/berth1:/bin/sh
berth2:x:4002:4002:berth test user 2:/home/berth2:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
`
	group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
mail:x:8:
wheel:x:10:root
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
berth1:x:4001:
berth2:x:4002:berth1
nogroup:x:65534:
`
)

// Fixture is one image (or index) and every reference it is served under.
type Fixture struct {
	Refs  []string
	Image v1.Image      // set for a single-platform image
	Index v1.ImageIndex // set for a multi-platform index
}

// catalog builds the fixtures from the installed busybox and libc packages
// and the imagebin program.
type catalog struct {
	imagebin []byte
	busybox  file
	applets  []string
	tools    []file // extraTools, in /bin
	libs     []file
	fixtures []Fixture
	layers   map[layerKey]v1.Layer // base layers are shared by most images: build them once
}

type layerKey struct {
	comment string
	c       compress
	mt      types.MediaType
}

// CritestRefs lists what critest v1.37.0 pulls on Linux, except
// gcr.io/k8s-staging-cri-tools/test-image-digest, which critest pins by a
// digest only its original build has.
var CritestRefs = []string{
	e2e + "busybox:1.29-2",
	e2e + "nginx:1.14-2",
	e2e + "httpd:2.4.39-4",
	e2e + "nonewprivs:1.3",
	k8sRegistry + "/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	criTools + "test-image-user-uid:latest",
	criTools + "test-image-user-username:latest",
	criTools + "test-image-user-uid-group:latest",
	criTools + "test-image-user-username-group:latest",
	criTools + "test-image-predefined-group:latest",
	criTools + "test-image-latest:latest",
	criTools + "test-image-tag:test",
	criTools + "test-image-tag:all",
	criTools + "test-image-1:latest",
	criTools + "test-image-2:latest",
	criTools + "test-image-3:latest",
	criTools + "test-image-tags:1",
	criTools + "test-image-tags:2",
	criTools + "test-image-tags:3",
	criTools + "hostnet-nginx-" + runtime.GOARCH + ":latest",
	ecrLibrary + "busybox:1.35.0-glibc",
	ecrLibrary + "busybox:1-uclibc",
	ecrLibrary + "busybox:1",
	ecrLibrary + "busybox:1-glibc",
	ecrLibrary + "busybox:1-musl",
}

// BenchRef is the ~100 MB, 5-layer image for pull benchmarks.
const BenchRef = fixtureHost + "/bench/big:latest"

// Refs of the fixtures berth's own tests use besides critest's.
const (
	BusyboxRef     = dockerLibrary + "busybox:latest"
	MixedLayersRef = fixtureHost + "/formats/mixed:latest" // gzip, zstd and uncompressed layers, OCI
	FullConfigRef  = fixtureHost + "/config/full:latest"   // User, Env, WorkingDir, Entrypoint, Cmd, Volumes, Labels
)

func newCatalog(imagebin []byte) (*catalog, error) {
	c := &catalog{imagebin: imagebin, layers: map[layerKey]v1.Layer{}}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox (Debian package busybox) is not installed: %w", err)
	}
	if c.busybox, err = hostFile("bin/busybox", bb, 0o755); err != nil {
		return nil, err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			c.applets = append(c.applets, a)
		}
	}
	if c.libs, err = sharedLibs(bb); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, l := range c.libs {
		seen[l.name] = true
	}
	for _, t := range extraTools {
		f, err := hostFile("bin/"+filepath.Base(t.path), t.path, 0o755)
		if err != nil {
			return nil, fmt.Errorf("%s (Debian package %s): %w", filepath.Base(t.path), t.pkg, err)
		}
		c.tools = append(c.tools, f)
		libs, err := sharedLibs(t.path)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			if !seen[l.name] {
				seen[l.name] = true
				c.libs = append(c.libs, l)
			}
		}
	}
	return c, nil
}

// extraTools are the programs critest runs in busybox images whose applets
// Debian's busybox leaves out (upstream busybox has them): pgrep (execSync
// with timeout: "pgrep sleep || true" must print nothing) and ipcs (HostIpc:
// "ipcs -m" must list the host's segment by its shmid in pod IPC mode NODE).
// They are Debian's, with every library ldd names for them.
var extraTools = []struct{ path, pkg string }{
	{"/usr/bin/pgrep", "procps"},
	{"/usr/bin/ipcs", "util-linux"},
}

// sharedLibs copies what the dynamic loader maps for bin, at the paths ldd
// names (the image has no merged /usr, so no /lib symlinks are needed).
func sharedLibs(bin string) ([]file, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []file
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var p string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			p = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			p = f[0]
		default:
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, err
		}
		lib, err := hostFile(strings.TrimPrefix(p, "/"), real, 0o755)
		if err != nil {
			return nil, err
		}
		libs = append(libs, lib)
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s found no libraries: is it the static busybox?", bin)
	}
	return libs, nil
}

// Layers of the busybox base image, bottom to top.
func (c *catalog) libLayer() []file { return c.libs }

func (c *catalog) busyboxLayer() []file {
	files := []file{dir("bin", 0o755, 0, 0), c.busybox}
	tool := map[string]bool{}
	for _, t := range c.tools {
		tool[t.name] = true
	}
	for _, a := range c.applets {
		if !tool["bin/"+a] { // a later busybox with the applet: the real tool wins
			files = append(files, hardlink("bin/"+a, "bin/busybox"))
		}
	}
	return append(files, c.tools...)
}

func rootfsLayer() []file {
	return []file{
		dir("dev", 0o755, 0, 0), dir("proc", 0o555, 0, 0), dir("sys", 0o555, 0, 0),
		dir("etc", 0o755, 0, 0), dir("root", 0o700, 0, 0), dir("tmp", 0o1777, 0, 0),
		dir("usr/bin", 0o755, 0, 0), dir("usr/sbin", 0o755, 0, 0), dir("usr/local/bin", 0o755, 0, 0),
		dir("sbin", 0o755, 0, 0), dir("run", 0o755, 0, 0), symlink("var/run", "../run"),
		dir("var/spool/mail", 0o755, 8, 8), dir("var/www", 0o755, 33, 33),
		text("etc/passwd", passwd),
		text("etc/group", group),
		reg("etc/shadow", 0o640, 0, 42, []byte("root:*::0:::::\nnobody:*::0:::::\n")),
		text("etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"),
		dir("home/berth1", 0o750, 4001, 4001),
		reg("home/berth1/.profile", 0o640, 4001, 4001, []byte("export PS1='berth1$ '\n")),
		dir("home/berth2", 0o755, 4002, 4002),
		// Removed again by the next layer: a file, and a directory made opaque.
		text("etc/berth/remove-me", "deleted by a whiteout in the layer above\n"),
		text("etc/berth/keep-me", "still here\n"),
		dir("var/cache/berth", 0o755, 4002, 4002),
		reg("var/cache/berth/old-1", 0o644, 4002, 4002, []byte("hidden by an opaque directory above\n")),
		reg("var/cache/berth/old-2", 0o600, 4001, 4001, []byte("hidden by an opaque directory above\n")),
	}
}

func cleanupLayer() []file {
	return []file{
		dir("etc/berth", 0o755, 0, 0),
		whiteout("etc/berth/remove-me"),
		dir("var/cache/berth", 0o755, 4002, 4002),
		opaque("var/cache/berth"),
		reg("var/cache/berth/new", 0o644, 4002, 4002, []byte("written by the top layer\n")),
	}
}

// imagebinLayer holds the in-image program once, hard-linked under the names
// of the roles the web server images start it as.
func (c *catalog) imagebinLayer() []file {
	return []file{
		reg("usr/local/lib/berth/imagebin", 0o755, 0, 0, c.imagebin),
		hardlink("usr/sbin/nginx", "usr/local/lib/berth/imagebin"),
		hardlink("usr/local/bin/httpd-foreground", "usr/local/lib/berth/imagebin"),
	}
}

type layerSpec struct {
	comment string
	files   []file
	c       compress
}

type imageSpec struct {
	oci    bool
	layers []layerSpec
	config v1.Config
}

func (c *catalog) baseLayers() []layerSpec {
	return []layerSpec{
		{"glibc and the shared libraries of busybox, pgrep and ipcs", c.libLayer(), gzipped},
		{"Debian busybox with applets as hard links, procps pgrep, util-linux ipcs", c.busyboxLayer(), gzipped},
		{"base files, users and groups", rootfsLayer(), gzipped},
		{"whiteouts: delete a file, make a directory opaque", cleanupLayer(), gzipped},
	}
}

func busyboxConfig() v1.Config {
	return v1.Config{Env: []string{defaultPath}, Cmd: []string{"sh"}}
}

func withUser(cfg v1.Config, user string) v1.Config { cfg.User = user; return cfg }

// build turns a spec into an image of the host's platform.
func (c *catalog) build(s imageSpec) (v1.Image, error) {
	img := empty.Image
	layerMT := types.DockerLayer
	if s.oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		layerMT = types.OCILayer
	}
	adds := make([]mutate.Addendum, 0, len(s.layers))
	for _, ls := range s.layers {
		mt := layerMT
		switch ls.c {
		case zstded:
			mt = types.OCILayerZStd
		case uncompressed:
			mt = types.OCIUncompressedLayer
		}
		key := layerKey{ls.comment, ls.c, mt}
		l, ok := c.layers[key]
		if !ok {
			var err error
			if l, err = newLayer(ls.files, ls.c, mt); err != nil {
				return nil, fmt.Errorf("layer %q: %w", ls.comment, err)
			}
			c.layers[key] = l
		}
		adds = append(adds, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "berth testimages: " + ls.comment},
		})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config = s.config
	return mutate.ConfigFile(img, cf)
}

// multiArch wraps img in an index with a second, foreign-platform entry (a
// copy of img whose config names another architecture), as the multi-arch
// originals are: a puller must pick the host's entry.
func multiArch(img v1.Image, oci bool) (v1.ImageIndex, error) {
	foreign := "arm64"
	if runtime.GOARCH == "arm64" {
		foreign = foreignArchAlt
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = foreign
	other, err := mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	if oci {
		idx = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	}
	return mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: foreign}}},
	), nil
}

func (c *catalog) add(s imageSpec, index bool, refs ...string) error {
	img, err := c.build(s)
	if err != nil {
		return fmt.Errorf("build %s: %w", refs[0], err)
	}
	f := Fixture{Refs: refs, Image: img}
	if index {
		if f.Index, err = multiArch(img, s.oci); err != nil {
			return fmt.Errorf("index %s: %w", refs[0], err)
		}
		f.Image = nil
	}
	c.fixtures = append(c.fixtures, f)
	return nil
}

// with returns base's layers plus extra, in a new slice.
func with(base []layerSpec, extra ...layerSpec) []layerSpec {
	return append(append([]layerSpec{}, base...), extra...)
}

func (c *catalog) buildAll() error {
	base := c.baseLayers()
	bbCfg := busyboxConfig()
	type entry struct {
		spec  imageSpec
		index bool
		refs  []string
	}
	marker := func(name string) layerSpec {
		return layerSpec{"ADD " + name, []file{reg(name, 0o644, 0, 0, nil)}, gzipped}
	}
	predefined := layerSpec{"default-user in group-defined-in-image", []file{
		text("etc/passwd", passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"),
		text("etc/group", group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
		dir("home/default-user", 0o755, 1000, 1000),
	}, gzipped}
	imagebin := layerSpec{"imagebin (nginx, httpd-foreground)", c.imagebinLayer(), gzipped}
	nginxConf := func(port int) layerSpec {
		return layerSpec{fmt.Sprintf("nginx configuration, port %d", port), []file{
			text("etc/nginx/nginx.conf", "# berth test image: imagebin reads only conf.d/*.conf listen lines\n"),
			text("etc/nginx/conf.d/default.conf", fmt.Sprintf("server {\n    listen       %d;\n    server_name  localhost;\n    location / {\n        root   /usr/share/nginx/html;\n        index  index.html;\n    }\n}\n", port)),
			text("usr/share/nginx/html/index.html", "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1></body></html>\n"),
			dir("var/log/nginx", 0o755, 0, 0), dir("var/cache/nginx", 0o755, 0, 0),
		}, gzipped}
	}
	nginxCfg := func(stop string) v1.Config {
		return v1.Config{
			Env: []string{defaultPath, "NGINX_VERSION=1.14.2"}, Cmd: []string{"nginx", "-g", "daemon off;"},
			ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: stop,
		}
	}
	httpdDir := layerSpec{"httpd document root", []file{
		dir("usr/local/apache2/bin", 0o755, 0, 0),
		text("usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n"),
	}, gzipped}
	nnp := layerSpec{"setuid nnp", []file{reg("usr/local/bin/nnp", 0o4755, 0, 0, c.imagebin)}, gzipped}
	pause := layerSpec{"pause", []file{reg("pause", 0o755, 0, 0, c.imagebin)}, gzipped}

	// The mixed-format image: busybox's layers stored three ways, each with
	// a file of its own so that its diff IDs (and so its unpacked layers and
	// image ID) are not busybox's.
	mixed := c.baseLayers()
	for i := range mixed {
		mixed[i].comment += ", format test copy"
		mixed[i].files = append(append([]file{}, mixed[i].files...),
			text(fmt.Sprintf("etc/berth/format-layer-%d", i), fmt.Sprintf("layer %d of %s\n", i, MixedLayersRef)))
	}
	mixed[1].c, mixed[2].c = zstded, uncompressed

	fullHome := layerSpec{"app dir owned by berth1", []file{
		dir("app", 0o755, 4001, 4001),
		reg("app/run.sh", 0o755, 4001, 4001, []byte("#!/bin/sh\necho \"$GREETING from $(pwd) as $(id -un)\"\n")),
	}, gzipped}

	entries := []entry{
		{imageSpec{layers: base, config: bbCfg}, true, []string{e2e + "busybox:1.29-2"}},
		{imageSpec{layers: base, config: bbCfg}, false, []string{
			BusyboxRef, dockerLibrary + "busybox:1.36",
			ecrLibrary + "busybox:1.35.0-glibc", ecrLibrary + "busybox:1-uclibc", ecrLibrary + "busybox:1",
			ecrLibrary + "busybox:1-glibc", ecrLibrary + "busybox:1-musl", ecrLibrary + "busybox:latest",
		}},
		{imageSpec{layers: base, config: withUser(bbCfg, "1002")}, true, []string{criTools + "test-image-user-uid:latest"}},
		{imageSpec{layers: base, config: withUser(bbCfg, "www-data")}, true, []string{criTools + "test-image-user-username:latest"}},
		{imageSpec{layers: base, config: withUser(bbCfg, "1003:1004")}, true, []string{criTools + "test-image-user-uid-group:latest"}},
		{imageSpec{layers: base, config: withUser(bbCfg, "www-data:1004")}, true, []string{criTools + "test-image-user-username-group:latest"}},
		{imageSpec{layers: with(base, predefined), config: withUser(bbCfg, "1000")}, true, []string{criTools + "test-image-predefined-group:latest"}},
		{imageSpec{layers: with(base, marker("test-image-latest")), config: bbCfg}, true, []string{criTools + "test-image-latest:latest"}},
		{imageSpec{layers: with(base, marker("test-image-1")), config: bbCfg}, true, []string{criTools + "test-image-1:latest"}},
		{imageSpec{layers: with(base, marker("test-image-2")), config: bbCfg}, true, []string{criTools + "test-image-2:latest"}},
		{imageSpec{layers: with(base, marker("test-image-3")), config: bbCfg}, true, []string{criTools + "test-image-3:latest"}},
		{imageSpec{oci: true, layers: with(base, marker("same-image")), config: bbCfg}, true, []string{
			criTools + "test-image-tags:1", criTools + "test-image-tags:2", criTools + "test-image-tags:3",
		}},
		{imageSpec{oci: true, layers: with(base, marker("test")), config: bbCfg}, true, []string{criTools + "test-image-tag:test"}},
		{imageSpec{oci: true, layers: with(base, marker("all")), config: bbCfg}, true, []string{criTools + "test-image-tag:all"}},
		{imageSpec{layers: []layerSpec{pause}, config: v1.Config{
			Env: []string{defaultPath}, Entrypoint: []string{"/pause"}, User: "65535:65535",
		}}, true, []string{
			k8sRegistry + "/pause:3.9", "k8s.gcr.io/pause:3.9", k8sRegistry + "/pause:3.10", k8sRegistry + "/pause:3.10.1",
		}},
		{imageSpec{layers: with(base, imagebin, nginxConf(80)), config: nginxCfg("SIGTERM")}, true, []string{e2e + "nginx:1.14-2"}},
		{imageSpec{layers: with(base, imagebin, nginxConf(12003)), config: nginxCfg("SIGQUIT")}, false, []string{
			criTools + "hostnet-nginx-" + runtime.GOARCH + ":latest",
		}},
		{imageSpec{layers: with(base, imagebin, httpdDir), config: v1.Config{
			Env:        []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HTTPD_PREFIX=/usr/local/apache2"},
			Cmd:        []string{"httpd-foreground"},
			WorkingDir: "/usr/local/apache2", ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: "SIGWINCH",
		}}, true, []string{e2e + "httpd:2.4.39-4"}},
		{imageSpec{layers: with(base, nnp), config: v1.Config{
			Env: []string{defaultPath}, Entrypoint: []string{"/usr/local/bin/nnp"},
		}}, true, []string{e2e + "nonewprivs:1.3"}},
		{imageSpec{oci: true, layers: mixed, config: bbCfg}, false, []string{MixedLayersRef}},
		{imageSpec{layers: with(base, fullHome), config: v1.Config{
			User: "berth1", WorkingDir: "/app",
			Env:        []string{defaultPath, "GREETING=hello"},
			Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"/app/run.sh"},
			Volumes:    map[string]struct{}{"/data": {}},
			Labels:     map[string]string{"io.berth.test": "full-config"},
			StopSignal: "SIGUSR1",
		}}, false, []string{FullConfigRef}},
		{imageSpec{layers: c.benchLayers(), config: bbCfg}, false, []string{BenchRef}},
	}
	for _, e := range entries {
		if err := c.add(e.spec, e.index, e.refs...); err != nil {
			return err
		}
	}
	return nil
}

// benchLayers are five layers of about 20 MiB each: the busybox rootfs in
// the first, so the image runs, and pseudo-random files from a fixed seed,
// which gzip cannot shrink, so a pull moves about 100 MB.
func (c *catalog) benchLayers() []layerSpec {
	const perLayer, fileSize = 20, 1 << 20
	var layers []layerSpec
	for i := range 5 {
		var files []file
		if i == 0 {
			for _, l := range c.baseLayers()[:3] {
				files = append(files, l.files...)
			}
		}
		var seed [32]byte
		seed[0] = byte(i + 1)
		rng := rand.NewChaCha8(seed)
		for j := range perLayer {
			b := make([]byte, fileSize)
			_, _ = rng.Read(b)
			files = append(files, reg(fmt.Sprintf("data/layer%d/blob%02d", i+1, j), 0o644, 0, 0, b))
		}
		layers = append(layers, layerSpec{fmt.Sprintf("bench data %d", i+1), files, gzipped})
	}
	return layers
}
