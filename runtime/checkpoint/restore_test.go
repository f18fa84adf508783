package checkpoint

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"

	"github.com/berth-dev/berth/errdefs"
)

type entry struct {
	name, body, link string
	kind             byte
}

func makeTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.kind, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.kind == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.kind != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.kind == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadMeta(t *testing.T) {
	arch := makeTar(t,
		entry{name: "checkpoint/", kind: tar.TypeDir},
		entry{name: "config.dump", body: `{"id":"abc","name":"counter","rootfsImageName":"busybox"}`, kind: tar.TypeReg},
		entry{name: "spec.dump", body: `{"process":{"args":["sh","-c","x"],"cwd":"/"}}`, kind: tar.TypeReg},
	)
	cfg, spec, err := ReadMeta(bytes.NewReader(arch))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "abc" || cfg.RootfsImageName != "busybox" || strings.Join(spec.Process.Args, " ") != "sh -c x" {
		t.Errorf("ReadMeta = %+v %+v", cfg, spec.Process)
	}
	for name, data := range map[string][]byte{
		"not a tar":   []byte("keep"),
		"no spec":     makeTar(t, entry{name: "config.dump", body: `{}`, kind: tar.TypeReg}),
		"bad json":    makeTar(t, entry{name: "config.dump", body: `{`, kind: tar.TypeReg}),
		"no process":  makeTar(t, entry{name: "config.dump", body: `{}`, kind: tar.TypeReg}, entry{name: "spec.dump", body: `{}`, kind: tar.TypeReg}),
		"empty input": nil,
	} {
		if _, _, err := ReadMeta(bytes.NewReader(data)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ReadMeta(%s) = %v, want InvalidArgument", name, err)
		}
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for name, arch := range map[string][]byte{
		"dotdot":  makeTar(t, entry{name: "../evil", body: "x", kind: tar.TypeReg}),
		"abs":     makeTar(t, entry{name: "/etc/evil", body: "x", kind: tar.TypeReg}),
		"symlink": makeTar(t, entry{name: "checkpoint", link: "/etc", kind: tar.TypeSymlink}),
	} {
		parent := t.TempDir()
		dir := filepath.Join(parent, "in")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := Unpack(bytes.NewReader(arch), dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Unpack(%s) = %v, want InvalidArgument", name, err)
		}
		if _, err := os.Lstat(filepath.Join(parent, "evil")); err == nil {
			t.Errorf("Unpack(%s) wrote outside its dir", name)
		}
	}
	dir := t.TempDir()
	if err := Unpack(bytes.NewReader(makeTar(t,
		entry{name: "checkpoint/", kind: tar.TypeDir},
		entry{name: "checkpoint/pages-1.img", body: "pages", kind: tar.TypeReg},
	)), dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "checkpoint/pages-1.img")); err != nil || string(b) != "pages" {
		t.Errorf("unpacked %q, %v", b, err)
	}
}

func TestApplyRootfsDiff(t *testing.T) {
	rootfs, dir, outside := t.TempDir(), t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:"), 0o644))
	// A symlink in the rootfs that points out of it: resolved inside.
	must(os.Symlink(outside, filepath.Join(rootfs, "escape")))
	must(os.WriteFile(filepath.Join(dir, metadata.RootFsDiffTar), makeTar(t,
		entry{name: "tmp/", kind: tar.TypeDir},
		entry{name: "tmp/count", body: "42\n", kind: tar.TypeReg},
		entry{name: "link", link: "/tmp/count", kind: tar.TypeSymlink},
		entry{name: "../../up", body: "stays inside", kind: tar.TypeReg},
	), 0o600))
	must(WriteJSON(dir, metadata.DeletedFilesFile, []string{"/etc/group", "/../../" + filepath.Base(outside)}))
	must(ApplyRootfsDiff(dir, rootfs))
	if b, err := os.ReadFile(filepath.Join(rootfs, "tmp/count")); err != nil || string(b) != "42\n" {
		t.Errorf("tmp/count = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "etc/group")); !os.IsNotExist(err) {
		t.Errorf("etc/group not removed: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(rootfs, "link")); err != nil || l != "/tmp/count" {
		t.Errorf("link = %q, %v", l, err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "up")); err != nil || string(b) != "stays inside" {
		t.Errorf("an entry climbing with .. = %q, %v; want it at the rootfs's top", b, err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("deleted.files removed a dir outside the rootfs: %v", err)
	}

	// A hostile diff that goes through a symlink out of the rootfs is
	// refused, and nothing is written there.
	must(os.WriteFile(filepath.Join(dir, metadata.RootFsDiffTar), makeTar(t,
		entry{name: "escape/owned", body: "x", kind: tar.TypeReg},
	), 0o600))
	if err := ApplyRootfsDiff(dir, rootfs); err == nil {
		t.Error("a diff entry through a symlink out of the rootfs was applied")
	}
	if _, err := os.Stat(filepath.Join(outside, "owned")); err == nil {
		t.Errorf("a diff entry was written through a symlink out of the rootfs")
	}
}

func TestRestoreArgs(t *testing.T) {
	s := strings.Join(RestoreArgs(RestoreOpts{
		ImagesDir: "/l/restore/checkpoint", WorkDir: "/l/restore", Root: "/s/rootfs",
		Mounts:     map[string]string{"/etc/hosts": "/pod/hosts"},
		InheritFDs: map[string]int{"extNetNs": 4, "pipe:[123]": 3},
		JoinNS:     map[string]string{"uts": "/proc/9/ns/uts"},
	}), " ")
	for _, want := range []string{
		"restore --restore-detached --images-dir /l/restore/checkpoint --work-dir /l/restore",
		"--root /s/rootfs --pidfile restore.pid",
		"--manage-cgroups=ignore",
		"--external mnt[/etc/hosts]:/pod/hosts",
		"--join-ns uts:/proc/9/ns/uts",
		"--inherit-fd fd[4]:extNetNs",
		"--inherit-fd fd[3]:pipe:[123]",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("restore args %q lack %q", s, want)
		}
	}
	if ExtNSKey("net") != "extNetNs" || ExtNSKey("pid") != "extPidNs" {
		t.Error("external namespace keys differ from runc's")
	}
}
