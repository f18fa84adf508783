// Package testimages builds berth's test images and serves them from a local
// registry on 127.0.0.1.
//
// The images are built from Debian's busybox package (the ordinary dynamic
// one, with its glibc libraries; applets are hard links in /bin), Debian's
// pgrep and ipcs (which its busybox lacks and critest runs) and from
// imagebin (hack/testimages/imagebin), a small static program that plays
// nginx, httpd, pause and nnp. They cover every Linux image critest v1.37.0
// pulls, under the same references (see CritestRefs), plus berth's own
// fixtures (BenchRef, MixedLayersRef, FullConfigRef, BusyboxRef).
//
// Build writes them once into an OCI image layout under
// _output/testimages/<key>/, where key hashes everything the images are made
// from (this package's sources as compiled, imagebin's sources, the busybox,
// libc6, procps and util-linux package versions, the libraries pgrep and
// ipcs load, the Go version); a later Build with the same key returns at
// once. Layouts of other keys are removed once unused for staleAfter.
// index.json names every image by its full upstream reference in the
// org.opencontainers.image.ref.name annotation.
package testimages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// formatVersion changes when the layout of the cache changes.
const formatVersion = "1"

// RefAnnotation holds an image's full reference in the layout's index.json.
const RefAnnotation = "org.opencontainers.image.ref.name"

// RepoRoot is the berth checkout this package was compiled from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// CacheRoot is where built layouts are kept: $BERTH_TESTIMAGES_CACHE or
// <repo>/_output/testimages.
func CacheRoot() string {
	if d := os.Getenv("BERTH_TESTIMAGES_CACHE"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "_output", "testimages")
}

// Build returns the OCI layout dir of the fixtures, building it into
// cacheRoot when no layout of the current key is there. Concurrent callers
// may both build; each writes a temp dir and the first rename wins.
func Build(ctx context.Context, cacheRoot string) (string, error) {
	key, err := cacheKey()
	if err != nil {
		return "", err
	}
	return buildCached(ctx, cacheRoot, key, "test images", (*catalog).buildAll)
}

// buildCached returns cacheRoot/key when a layout is there, and otherwise
// builds one with fill into a temp dir and renames it into place (the first
// of concurrent builds wins), removing layouts of other keys.
func buildCached(ctx context.Context, cacheRoot, key, what string, fill func(*catalog) error) (string, error) {
	final := filepath.Join(cacheRoot, key)
	if _, err := os.Stat(filepath.Join(final, "index.json")); err == nil {
		markUsed(final)
		return final, nil
	}
	if err := os.MkdirAll(cacheRoot, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cacheRoot, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	bin, err := buildImagebin(ctx, tmp)
	if err != nil {
		return "", err
	}
	c, err := newCatalog(bin)
	if err != nil {
		return "", err
	}
	if err := fill(c); err != nil {
		return "", err
	}
	dir := filepath.Join(tmp, "layout")
	if err := writeLayout(dir, c.fixtures); err != nil {
		return "", err
	}
	if err := os.Rename(dir, final); err != nil {
		if _, serr := os.Stat(filepath.Join(final, "index.json")); serr == nil {
			return final, nil // another build finished first
		}
		return "", fmt.Errorf("install %s: %w", what, err)
	}
	removeStale(cacheRoot, key)
	return final, nil
}

func writeLayout(dir string, fixtures []Fixture) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	for _, f := range fixtures {
		for _, ref := range f.Refs {
			opt := layout.WithAnnotations(map[string]string{RefAnnotation: ref})
			if f.Index != nil {
				err = p.AppendIndex(f.Index, opt)
			} else {
				err = p.AppendImage(f.Image, opt)
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", ref, err)
			}
		}
	}
	return nil
}

// staleAfter is how long a layout of another key is kept after its last
// Build: test binaries compiled from other sources (a run that started
// before an edit of this package, another checkout's) may still serve it.
const staleAfter = 2 * time.Hour

// markUsed dates a layout's last use, which removeStale reads.
func markUsed(dir string) {
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
}

// removeStale drops layouts of other keys (each is ~150 MB) that no Build
// returned for staleAfter.
func removeStale(cacheRoot, keep string) {
	entries, _ := os.ReadDir(cacheRoot)
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
			os.RemoveAll(filepath.Join(cacheRoot, e.Name()))
		}
	}
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go" // where hack/install-deps.sh expects Go
}

// buildImagebin compiles the in-image program statically and reproducibly.
func buildImagebin(ctx context.Context, tmp string) ([]byte, error) {
	out := filepath.Join(tmp, "imagebin")
	cmd := exec.CommandContext(ctx, goBinary(), "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./hack/testimages/imagebin")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build imagebin: %v\n%s", err, b)
	}
	return os.ReadFile(out)
}

//go:embed *.go
var ownSources embed.FS

func hashSource(h io.Writer, rel string, b []byte) {
	fmt.Fprintf(h, "%s %d\n", rel, len(b))
	h.Write(bytes.TrimSpace(b))
}

// cacheKey hashes everything the images are built from.
func cacheKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "format %s\n%s\n", formatVersion, runtime.Version())
	out, err := exec.Command("dpkg-query", "-W", "busybox", "libc6", "procps", "util-linux").Output()
	if err != nil {
		return "", fmt.Errorf("dpkg-query busybox libc6 procps util-linux (install them with hack/install-deps.sh): %w", err)
	}
	h.Write(out)
	// The extra tools' libraries come from more packages (libproc2-0,
	// libsystemd0 and theirs): hash what the images copy.
	for _, t := range extraTools {
		libs, err := sharedLibs(t.path)
		if err != nil {
			return "", err
		}
		for _, l := range libs {
			fmt.Fprintf(h, "%s %x\n", l.name, sha256.Sum256(l.data))
		}
	}
	// This package's sources as compiled into the running binary, not as
	// on disk now: a test binary built before an edit must not store its
	// images under the key of the edited sources.
	names, err := fs.Glob(ownSources, "*.go")
	if err != nil {
		return "", err
	}
	for _, n := range names {
		// serve.go does not change the images; nodee2e.go changes only
		// BuildNodeE2E's, whose key hashes it.
		if strings.HasSuffix(n, "_test.go") || n == "serve.go" || n == "nodee2e.go" {
			continue
		}
		b, err := ownSources.ReadFile(n)
		if err != nil {
			return "", err
		}
		hashSource(h, "test/framework/testimages/"+n, b)
	}
	// imagebin is compiled from the disk at build time.
	root := RepoRoot()
	var files []string
	err = filepath.WalkDir(filepath.Join(root, "hack/testimages/imagebin"), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash test image sources: %w", err)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, f)
		hashSource(h, rel, b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
