package testimages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// NodeE2ERefs lists the images the Kubernetes node e2e suite (e2e_node.test
// v1.37.2, test/utils/image/manifest.go) pulls in its default
// [NodeConformance] set, under their real references. Stand-ins, built as
// the critest images are: Debian's busybox and glibc, imagebin for nginx,
// nnp and pause, and agnhost's real binary built from its source.
var NodeE2ERefs = []string{
	e2e + "busybox:1.37.0-2",
	e2e + "agnhost:2.66.1",
	e2e + "agnhost:2.55",
	e2e + "nginx:1.27.0-2",
	e2e + "nginx:1.28.0-2",
	e2e + "nonewprivs:1.4",
	e2e + "nonroot:1.5",
	e2e + "glibc-dns-testing:2.1.1",
	e2e + "ipc-utils:1.4",
	k8sRegistry + "/pause:3.10.2",
}

// nodeE2EUsers adds agnhost's own user and group (its Dockerfile's adduser
// and addgroup) to the busybox images' ones.
const (
	agnhostPasswd = passwd + "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"
	agnhostGroup  = group + "user-defined-in-image:x:1000:user-defined-in-image\ngroup-defined-in-image:x:50000:user-defined-in-image\n"
)

// agnhostTools are the Alpine packages of the real agnhost image that specs
// of the default set run (the lifecycle hook specs curl an agnhost server
// from an agnhost container; some pods run bash), from Debian with every
// library ldd names for them.
var agnhostTools = []hostTool{
	{"/usr/bin/curl", "curl", ""},
	{"/bin/bash", "bash", ""},
	// Alpine's busybox nc takes -u (the UDP networking specs send with
	// "nc -w 1 -u"); Debian's does not. Before busybox's /bin/nc in PATH.
	{"/bin/nc.openbsd", "netcat-openbsd", "/usr/bin/nc"},
}

// hostTool is a binary of the host (path, of Debian package pkg) put in an
// image at its own path or at at.
type hostTool struct{ path, pkg, at string }

// BuildNodeE2E returns the OCI layout dir of the node e2e stand-ins, with
// agnhost (a static binary of k8s.io/kubernetes/test/images/agnhost) in
// the agnhost images. It is cached under cacheRoot/<key> like Build's
// layout; cacheRoot must not be Build's, whose stale-layout sweep would
// remove it.
func BuildNodeE2E(ctx context.Context, cacheRoot, agnhost string) (string, error) {
	agn, err := os.ReadFile(agnhost)
	if err != nil {
		return "", fmt.Errorf("read agnhost binary (hack/build-e2e-node.sh agnhost builds it): %w", err)
	}
	base, err := cacheKey()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "node e2e\n%s\nagnhost %x\n", base, sha256.Sum256(agn))
	src, err := ownSources.ReadFile("nodee2e.go")
	if err != nil {
		return "", err
	}
	hashSource(h, "test/framework/testimages/nodee2e.go", src)
	for _, t := range agnhostTools {
		b, err := os.ReadFile(t.path)
		if err != nil {
			return "", fmt.Errorf("%s (Debian package %s): %w", t.path, t.pkg, err)
		}
		fmt.Fprintf(h, "%s %x\n", t.path, sha256.Sum256(b))
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	return buildCached(ctx, cacheRoot, key, "node e2e images", func(c *catalog) error { return c.buildNodeE2E(agn) })
}

// agnhostLayer is agnhost at /agnhost (and /agnhost-2, as the real image
// links it), curl and bash with their libraries, agnhost's users, /uploads,
// and /localhost.crt and /localhost.key for netexec's TLS.
func (c *catalog) agnhostLayer(agnhost []byte) ([]file, error) {
	crt, key, err := localhostCert()
	if err != nil {
		return nil, err
	}
	files := []file{
		text("localhost.crt", string(crt)),
		reg("localhost.key", 0o644, 0, 0, key),
		reg("agnhost", 0o755, 0, 0, agnhost),
		symlink("agnhost-2", "agnhost"),
		dir("uploads", 0o755, 0, 0),
		text("etc/passwd", agnhostPasswd),
		text("etc/group", agnhostGroup),
		dir("home/user-defined-in-image", 0o755, 1000, 1000),
	}
	tools, err := c.hostTools(agnhostTools...)
	if err != nil {
		return nil, err
	}
	return append(files, tools...), nil
}

// hostTools is the host's binaries at their paths with every library ldd
// names for them that the base layers lack.
func (c *catalog) hostTools(tools ...hostTool) ([]file, error) {
	var files []file
	seen := map[string]bool{}
	for _, l := range c.libs {
		seen[l.name] = true
	}
	for _, t := range tools {
		at := t.path
		if t.at != "" {
			at = t.at
		}
		f, err := hostFile(at[1:], t.path, 0o755)
		if err != nil {
			return nil, fmt.Errorf("%s (Debian package %s): %w", filepath.Base(t.path), t.pkg, err)
		}
		files = append(files, f)
		libs, err := sharedLibs(t.path)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			if !seen[l.name] {
				seen[l.name] = true
				files = append(files, l)
			}
		}
	}
	return files, nil
}

func (c *catalog) buildNodeE2E(agnhost []byte) error {
	// The container lifecycle specs time their steps with busybox's
	// nmeter, which Debian's busybox lacks: imagebin plays it.
	nmeter := layerSpec{"imagebin as busybox's nmeter", []file{reg("bin/nmeter", 0o755, 0, 0, c.imagebin)}, gzipped}
	base := with(c.baseLayers(), nmeter)
	bbCfg := busyboxConfig()
	// Debian's busybox 1.35 ash drops environment variables whose names are
	// no shell identifiers ("data-1" of a configMap's envFrom) and refuses
	// "exit -1"; the busybox 1.37 of the real image keeps and takes them, and
	// specs rely on both. bash, as /bin/sh of the busybox images, does too.
	shFiles, err := c.hostTools(hostTool{"/bin/bash", "bash", ""})
	if err != nil {
		return err
	}
	shLayer := layerSpec{"bash as /bin/sh (busybox 1.37's ash keeps env names like data-1, takes exit -1)", append(shFiles, symlink("bin/sh", "bash")), gzipped}
	bbBase := with(base, shLayer)
	agnFiles, err := c.agnhostLayer(agnhost)
	if err != nil {
		return err
	}
	agn := layerSpec{"agnhost, curl, bash, nc, agnhost's users", agnFiles, gzipped}
	imagebin := layerSpec{"imagebin (nginx)", c.imagebinLayer(), gzipped}
	nginxConf := layerSpec{"nginx configuration, port 80", []file{
		text("etc/nginx/nginx.conf", "# berth test image: imagebin reads only conf.d/*.conf listen lines\n"),
		text("etc/nginx/conf.d/default.conf", "server {\n    listen       80;\n    server_name  localhost;\n    location / {\n        root   /usr/share/nginx/html;\n        index  index.html;\n    }\n}\n"),
		text("usr/share/nginx/html/index.html", "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1></body></html>\n"),
		dir("var/log/nginx", 0o755, 0, 0), dir("var/cache/nginx", 0o755, 0, 0),
	}, gzipped}
	nnp := layerSpec{"setuid nnp", []file{reg("usr/local/bin/nnp", 0o4755, 0, 0, c.imagebin)}, gzipped}
	pause := layerSpec{"pause", []file{reg("pause", 0o755, 0, 0, c.imagebin)}, gzipped}
	ports := func(ps ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, p := range ps {
			m[p] = struct{}{}
		}
		return m
	}
	entries := []struct {
		spec imageSpec
		refs []string
	}{
		{imageSpec{layers: bbBase, config: bbCfg}, []string{e2e + "busybox:1.37.0-2", e2e + "glibc-dns-testing:2.1.1", e2e + "ipc-utils:1.4"}},
		{imageSpec{layers: bbBase, config: withUser(bbCfg, "1234")}, []string{e2e + "nonroot:1.5"}},
		{imageSpec{layers: with(base, agn), config: v1.Config{
			Env: []string{defaultPath}, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
			ExposedPorts: ports("80/tcp", "8080/tcp", "8081/tcp", "9376/tcp", "5000/tcp"),
		}}, []string{e2e + "agnhost:2.66.1", e2e + "agnhost:2.55"}},
		{imageSpec{layers: with(base, imagebin, nginxConf), config: v1.Config{
			Env: []string{defaultPath, "NGINX_VERSION=1.27.0"}, Cmd: []string{"nginx", "-g", "daemon off;"},
			ExposedPorts: ports("80/tcp"), StopSignal: "SIGQUIT",
		}}, []string{e2e + "nginx:1.27.0-2", e2e + "nginx:1.28.0-2"}},
		{imageSpec{layers: with(base, nnp), config: v1.Config{
			Env: []string{defaultPath}, Cmd: []string{"nnp"},
		}}, []string{e2e + "nonewprivs:1.4"}},
		{imageSpec{layers: []layerSpec{pause}, config: v1.Config{
			Env: []string{defaultPath}, Entrypoint: []string{"/pause"}, User: "65535:65535",
		}}, []string{k8sRegistry + "/pause:3.10.2"}},
	}
	for _, e := range entries {
		if err := c.add(e.spec, true, e.refs...); err != nil {
			return err
		}
	}
	return nil
}
