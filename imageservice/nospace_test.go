package imageservice

import (
	"archive/tar"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/imagetest"
	"github.com/berth-dev/berth/imageservice/registryconf"
)

// TestPullOnFullDisk pulls an image larger than the image store's file
// system: the pull fails with ErrResourceExhausted naming that file system,
// not with the registry's fault; it tries no other host (a mirror is tried
// first), leaves nothing behind, and a pull once there is room succeeds.
func TestPullOnFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	reg := imagetest.StartRegistry(t)
	big := make([]byte, 6<<20)
	rand.Read(big)
	small := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "etc/", Type: tar.TypeDir}, imagetest.Entry{Name: "etc/hostname", Body: "x\n"})
	large := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "big", Body: string(big)})
	ref := reg.Push(t, "test/big:v1", imagetest.Image(t, false, "", small, large))
	var gets atomic.Int32
	reg.Wrap = imagetest.BlobHandler(imagetest.Digest(t, large), func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		gets.Add(1)
		next.ServeHTTP(w, r)
	})

	root := filepath.Join(t.TempDir(), "root")
	fs := imagetest.MountTmpfs(t, root, 2<<20)
	s := newService(t, func(o *Options) { o.Root = root })
	// The same registry as a mirror, tried first, then as itself.
	port := reg.Host[strings.LastIndexByte(reg.Host, ':')+1:]
	conf := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://localhost:%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", reg.Host, port)
	if err := os.MkdirAll(filepath.Join(s.opts.RegistryConfigDir, reg.Host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.opts.RegistryConfigDir, reg.Host, "hosts.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if hosts, err := registryconf.Load(s.opts.RegistryConfigDir, reg.Host); err != nil || len(hosts) != 2 {
		t.Fatalf("registry config: %v %v", hosts, err)
	}

	_, err := s.Pull(ctx(t), ref, nil)
	if !errors.Is(err, errdefs.ErrResourceExhausted) || errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("pull onto a full disk: %v, want ErrResourceExhausted (and not Unavailable)", err)
	}
	if !strings.Contains(err.Error(), "no space left on the file system of "+filepath.Join(root, "images")) {
		t.Errorf("the error does not name the image store: %v", err)
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("the large layer was fetched %d times, want once: a full disk is no host's fault", n)
	}
	assertNothingLeft(t, s)
	if imgs, err := s.List(); err != nil || len(imgs) != 0 {
		t.Errorf("images after a failed pull: %v %v", imgs, err)
	}

	fs.Resize(t, 64<<20)
	if _, err := s.Pull(ctx(t), ref, nil); err != nil {
		t.Fatalf("pull once there is room: %v", err)
	}
	if img, err := s.Resolve(ctx(t), ref); err != nil || len(img.LayerDirs) != 2 {
		t.Fatalf("resolve after the pull: %v %v", img, err)
	}
}
