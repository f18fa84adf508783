package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
	uid, gid   int
	xattrs     map[string]string
}

func tarOf(t testing.TB, es ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mt, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
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

func unpackInto(t *testing.T, data []byte) (string, Stats, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := Unpack(context.Background(), bytes.NewReader(data), dir)
	return dir, st, err
}

func TestUnpackKeepsMetadata(t *testing.T) {
	data := tarOf(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o751},
		entry{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0\n", mode: 0o4755, uid: 1000, gid: 1001, xattrs: map[string]string{"user.k": "v", "trusted.overlay.redirect": "/x"}},
		entry{name: "etc/link", typ: tar.TypeLink, link: "etc/passwd"},
		entry{name: "etc/sym", typ: tar.TypeSymlink, link: "/etc/passwd", uid: 7, gid: 8},
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		entry{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
	)
	dir, st, err := unpackInto(t, data)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len("root:x:0:0\n")) {
		t.Errorf("size = %d", st.Size)
	}
	var s unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "etc/passwd"), &s); err != nil {
		t.Fatal(err)
	}
	if s.Uid != 1000 || s.Gid != 1001 || s.Mode&0o7777 != 0o4755 || s.Nlink != 2 {
		t.Errorf("passwd: uid %d gid %d mode %o nlink %d", s.Uid, s.Gid, s.Mode&0o7777, s.Nlink)
	}
	if s.Mtim.Sec != 1700000000 {
		t.Errorf("mtime = %d", s.Mtim.Sec)
	}
	b := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(dir, "etc/passwd"), "user.k", b); err != nil || string(b[:n]) != "v" {
		t.Errorf("user.k xattr = %q, %v", b[:n], err)
	}
	if _, err := unix.Getxattr(filepath.Join(dir, "etc/passwd"), "trusted.overlay.redirect", b); err == nil {
		t.Errorf("an overlay xattr from the tar was applied")
	}
	if err := unix.Lstat(filepath.Join(dir, "etc/sym"), &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFLNK || s.Uid != 7 {
		t.Errorf("symlink: %v mode %o uid %d", err, s.Mode, s.Uid)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "etc/sym")); l != "/etc/passwd" {
		t.Errorf("symlink target %q", l)
	}
	if err := unix.Lstat(filepath.Join(dir, "etc"), &s); err != nil || s.Mode&0o7777 != 0o751 || s.Mtim.Sec != 1700000000 {
		t.Errorf("dir: %v mode %o mtime %d", err, s.Mode&0o7777, s.Mtim.Sec)
	}
	if err := unix.Lstat(filepath.Join(dir, "dev/null"), &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("char dev: %v mode %o", err, s.Mode)
	}
	if err := unix.Lstat(filepath.Join(dir, "fifo"), &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: %v mode %o", err, s.Mode)
	}
}

func TestWhiteouts(t *testing.T) {
	data := tarOf(t,
		entry{name: "a/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "a/.wh..wh..opq", typ: tar.TypeReg},
		entry{name: "a/keep", typ: tar.TypeReg, body: "x"},
		entry{name: "b/.wh.gone", typ: tar.TypeReg},
		entry{name: ".wh.c", typ: tar.TypeReg},
		entry{name: ".wh..wh.plnk", typ: tar.TypeReg},
	)
	dir, _, err := unpackInto(t, data)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if n, err := unix.Getxattr(filepath.Join(dir, "a"), opaqueXattr, b); err != nil || string(b[:n]) != "y" {
		t.Errorf("opaque xattr = %q, %v", b[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "a/.wh..wh..opq")); !os.IsNotExist(err) {
		t.Errorf("opaque marker file left: %v", err)
	}
	for _, p := range []string{"b/gone", "c"} {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &s); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 || s.Uid != 0 || s.Gid != 0 {
			t.Errorf("%s: mode %o rdev %d owner %d:%d, want a 0:0 char device", p, s.Mode, s.Rdev, s.Uid, s.Gid)
		}
	}
	for _, p := range []string{"b/.wh.gone", ".wh.c", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s left in the layer", p)
		}
	}
}

// TestWhiteoutsHideOnlyLowerLayers mounts each unpacked layer over a lower
// one and checks what overlayfs shows: a whiteout hides what the lower layer
// holds, never what its own layer adds, whichever comes first in the tar.
func TestWhiteoutsHideOnlyLowerLayers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for overlay mounts and trusted xattrs")
	}
	lower, _, err := unpackInto(t, tarOf(t,
		entry{name: "d/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "d/old", typ: tar.TypeReg, body: "lower"},
		entry{name: "f", typ: tar.TypeReg, body: "lower"},
		entry{name: "g/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "g/old", typ: tar.TypeReg, body: "lower"},
	))
	if err != nil {
		t.Fatal(err)
	}
	dir := entry{name: "d/", typ: tar.TypeDir, mode: 0o755}
	newFile := entry{name: "d/new", typ: tar.TypeReg, body: "upper"}
	upperF := entry{name: "f", typ: tar.TypeReg, body: "upper"}
	wh := func(name string) entry { return entry{name: name, typ: tar.TypeReg} }
	cases := []struct {
		name    string
		entries []entry
		want    string // what the merged tree shows, path=content
	}{
		{"file whiteout", []entry{wh(".wh.f")}, "d/ d/old=lower g/ g/old=lower"},
		{"file whiteout after the layer's file", []entry{upperF, wh(".wh.f")}, "d/ d/old=lower f=upper g/ g/old=lower"},
		{"file whiteout before the layer's file", []entry{wh(".wh.f"), upperF}, "d/ d/old=lower f=upper g/ g/old=lower"},
		{"dir whiteout", []entry{wh(".wh.d")}, "f=lower g/ g/old=lower"},
		{"dir whiteout after the layer's dir", []entry{dir, newFile, wh(".wh.d")}, "d/ d/new=upper f=lower g/ g/old=lower"},
		{"dir whiteout before the layer's dir", []entry{wh(".wh.d"), dir, newFile}, "d/ d/new=upper f=lower g/ g/old=lower"},
		{"dir whiteout after an entry below it", []entry{newFile, wh(".wh.d")}, "d/ d/new=upper f=lower g/ g/old=lower"},
		{"dir whiteout before an entry below it", []entry{wh(".wh.d"), newFile}, "d/ d/new=upper f=lower g/ g/old=lower"},
		{"dir whiteout then a file in its place", []entry{wh(".wh.d"), {name: "d", typ: tar.TypeReg, body: "upper"}}, "d=upper f=lower g/ g/old=lower"},
		{"opaque before the layer's entries", []entry{dir, wh("d/.wh..wh..opq"), newFile}, "d/ d/new=upper f=lower g/ g/old=lower"},
		{"opaque after the layer's entries", []entry{dir, newFile, wh("d/.wh..wh..opq")}, "d/ d/new=upper f=lower g/ g/old=lower"},
		{"opaque without a dir entry", []entry{wh("d/.wh..wh..opq")}, "d/ f=lower g/ g/old=lower"},
		{"whiteout below the layer's symlink", []entry{{name: "g", typ: tar.TypeSymlink, link: "d"}, wh("g/.wh.old")}, "d/ d/old=lower f=lower g->d"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upper, _, err := unpackInto(t, tarOf(t, tc.entries...))
			if err != nil {
				t.Fatal(err)
			}
			mnt := t.TempDir()
			if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+upper+":"+lower); err != nil {
				t.Fatalf("mount overlay: %v", err)
			}
			defer func() {
				if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
					t.Errorf("unmount: %v", err)
				}
			}()
			if got := tree(t, mnt); got != tc.want {
				t.Errorf("merged tree = %q, want %q", got, tc.want)
			}
		})
	}
}

// tree lists dir as "path/ path=content path->target", sorted.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case e.IsDir():
			out = append(out, rel+"/")
		case e.Type()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out = append(out, rel+"->"+l)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, rel+"="+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

// TestWhiteoutsInTheLayerDir checks the overlayfs form of each whiteout in
// the unpacked layer itself (what the mount test above relies on).
func TestWhiteoutsInTheLayerDir(t *testing.T) {
	data := tarOf(t,
		entry{name: "d/x", typ: tar.TypeReg, body: "mine"},
		entry{name: ".wh.d", typ: tar.TypeReg},
		entry{name: ".wh.f", typ: tar.TypeReg},
		entry{name: "f/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "p", typ: tar.TypeReg, body: "file"},
		entry{name: "p/.wh.x", typ: tar.TypeReg},
		entry{name: ".wh..wh..opq", typ: tar.TypeReg},
	)
	dir, _, err := unpackInto(t, data)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	for _, p := range []string{".", "d", "f"} {
		if n, err := unix.Getxattr(filepath.Join(dir, p), opaqueXattr, b); err != nil || string(b[:n]) != "y" {
			t.Errorf("%s: opaque xattr = %q, %v; want y", p, b[:n], err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "d/x")); err != nil || string(got) != "mine" {
		t.Errorf("d/x = %q, %v: the layer's own entry was hidden", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "p")); err != nil || string(got) != "file" {
		t.Errorf("p = %q, %v", got, err)
	}
}

func TestEscapesFail(t *testing.T) {
	outside := t.TempDir()
	cases := map[string][]entry{
		"dotdot":            {{name: "../evil", typ: tar.TypeReg, body: "x"}},
		"nested dotdot":     {{name: "a/../../evil", typ: tar.TypeReg, body: "x"}},
		"absolute":          {{name: "/evil", typ: tar.TypeReg, body: "x"}},
		"through symlink":   {{name: "l", typ: tar.TypeSymlink, link: outside}, {name: "l/evil", typ: tar.TypeReg, body: "x"}},
		"relative symlink":  {{name: "l", typ: tar.TypeSymlink, link: "../../../../../../../.." + outside}, {name: "l/evil", typ: tar.TypeReg, body: "x"}},
		"hardlink outside":  {{name: "h", typ: tar.TypeLink, link: "../../../../etc/passwd"}},
		"hardlink absolute": {{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}},
		"hardlink via sym":  {{name: "l", typ: tar.TypeSymlink, link: "/etc"}, {name: "h", typ: tar.TypeLink, link: "l/passwd"}},
		"whiteout dotdot":   {{name: "a/.wh...", typ: tar.TypeReg}},
		"symlink dir chain": {{name: "d", typ: tar.TypeSymlink, link: "."}, {name: "e", typ: tar.TypeSymlink, link: "d/../.."}, {name: "e/evil", typ: tar.TypeReg, body: "x"}},
	}
	for name, es := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := unpackInto(t, tarOf(t, es...))
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("err = %v, want ErrUnsafe", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("something was written outside the layer: %v", ents)
			}
		})
	}
}

func TestHardlinkAndReplace(t *testing.T) {
	data := tarOf(t,
		entry{name: "bin/busybox", typ: tar.TypeReg, body: "elf", mode: 0o755},
		entry{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
		entry{name: "bin/ls", typ: tar.TypeLink, link: "./bin/busybox"},
		entry{name: "x", typ: tar.TypeDir},
		entry{name: "x/sub/", typ: tar.TypeDir},
		entry{name: "x/y", typ: tar.TypeReg, body: "1"},
		entry{name: "x", typ: tar.TypeReg, body: "file now"},
		entry{name: "f", typ: tar.TypeReg, body: "old"},
		entry{name: "f", typ: tar.TypeReg, body: "new"},
	)
	dir, _, err := unpackInto(t, data)
	if err != nil {
		t.Fatal(err)
	}
	var a, b unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "bin/busybox"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(dir, "bin/ls"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Nlink != 3 {
		t.Errorf("hardlinks: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "x")); string(got) != "file now" {
		t.Errorf("x = %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "new" {
		t.Errorf("f = %q", got)
	}
}

// FuzzUnpack feeds arbitrary tar streams: unpacking may fail, but nothing may
// appear outside the layer directory. Each run touches the filesystem, so
// minimizing inputs is slow: fuzz with a bounded minimization, e.g.
//
//	go test ./imageservice/unpack -run XXX -fuzz FuzzUnpack -fuzztime 5m -fuzzminimizetime 200x
func FuzzUnpack(f *testing.F) {
	f.Add(tarOf(f, entry{name: "a/b", typ: tar.TypeReg, body: "x"}))
	f.Add(tarOf(f, entry{name: "l", typ: tar.TypeSymlink, link: ".."}, entry{name: "l/x", typ: tar.TypeReg, body: "x"}))
	f.Add(tarOf(f, entry{name: "h", typ: tar.TypeLink, link: "../x"}))
	f.Add(tarOf(f, entry{name: "d/.wh..wh..opq", typ: tar.TypeReg}, entry{name: "d/.wh.x", typ: tar.TypeReg}))
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := os.MkdirTemp("", "fuzz-unpack-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(top)
		dir := filepath.Join(top, "layer")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = Unpack(ctx, bytes.NewReader(data), dir)
		ents, err := os.ReadDir(top)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 || ents[0].Name() != "layer" {
			t.Fatalf("unpack wrote outside the layer dir: %v", ents)
		}
	})
}
