package containerinit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// handlePath is where an O_PATH handle points.
func handlePath(t *testing.T, fd int) string {
	t.Helper()
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRootConfinesSymlinks: symlinks in the rootfs, absolute or climbing
// with "..", resolve inside it, with openat2 and with the securejoin
// fallback alike; what is created follows them inside too.
func TestRootConfinesSymlinks(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			dir := t.TempDir()
			rootfs := filepath.Join(dir, "rootfs")
			for _, d := range []string{"etc", "real/dir", "run"} {
				if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			links := map[string]string{"abs": "/etc", "up": "../../../../..", "rel": "real/dir", "var-run": "/run", "dangling": "/nowhere"}
			for name, target := range links {
				if err := os.Symlink(target, filepath.Join(rootfs, name)); err != nil {
					t.Fatal(err)
				}
			}
			r, err := openRoot(rootfs)
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			r.noOpenat2 = fallback

			for p, want := range map[string]string{
				"/abs":      filepath.Join(rootfs, "etc"),
				"/up":       rootfs,
				"/up/etc":   filepath.Join(rootfs, "etc"),
				"/rel":      filepath.Join(rootfs, "real/dir"),
				"../../etc": filepath.Join(rootfs, "etc"),
			} {
				fd, err := r.open(p)
				if err != nil {
					t.Fatalf("open %s: %v", p, err)
				}
				if got := handlePath(t, fd); got != want {
					t.Errorf("%s resolved to %s, want %s", p, got, want)
				}
				unix.Close(fd)
			}
			// The host's /etc/passwd is not reachable through /abs.
			if fd, err := r.open("/abs/passwd"); err == nil {
				t.Errorf("/abs/passwd resolved to %s", handlePath(t, fd))
				unix.Close(fd)
			}

			// Creation through a symlink stays inside: /var-run -> /run.
			fd, err := r.mkdirAll("/var-run/sub/dir", 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if got := handlePath(t, fd); got != filepath.Join(rootfs, "run/sub/dir") {
				t.Errorf("mkdirAll made %s", got)
			}
			unix.Close(fd)
			// A dangling symlink is refused rather than followed.
			if fd, err := r.mkdirAll("/dangling/x", 0o755); err == nil {
				t.Errorf("mkdirAll through a dangling symlink made %s", handlePath(t, fd))
				unix.Close(fd)
			}
			fd, err = r.createFile("/up/new/file")
			if err != nil {
				t.Fatal(err)
			}
			if got := handlePath(t, fd); got != filepath.Join(rootfs, "new/file") {
				t.Errorf("createFile made %s", got)
			}
			unix.Close(fd)
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("something was made outside the rootfs: %s", strings.Join(names, " "))
			}
		})
	}
}
