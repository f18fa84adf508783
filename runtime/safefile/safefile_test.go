package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// setup makes a directory with a host file outside it and returns both.
func setup(t *testing.T) (*Dir, string, string) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	host := filepath.Join(root, "host-file")
	if err := os.WriteFile(host, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dir, host
}

func hostUnchanged(t *testing.T, host string) {
	t.Helper()
	if b, err := os.ReadFile(host); err != nil || string(b) != "host\n" {
		t.Errorf("host file: %q, %v", b, err)
	}
}

func TestCreateAppend(t *testing.T) {
	d, dir, _ := setup(t)
	if err := d.MkdirAll("web", 0o755); err != nil {
		t.Fatal(err)
	}
	f, created, err := d.CreateAppend("web/0.log", 0o640)
	if err != nil || !created {
		t.Fatalf("first open: created %v, %v", created, err)
	}
	f.WriteString("a\n")
	f.Close()
	f, created, err = d.CreateAppend("web/0.log", 0o640)
	if err != nil || created {
		t.Fatalf("second open: created %v, %v", created, err)
	}
	f.WriteString("b\n")
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, "web/0.log")); string(b) != "a\nb\n" {
		t.Errorf("content %q", b)
	}
}

func TestRefused(t *testing.T) {
	d, dir, host := setup(t)
	mustSymlink := func(target, at string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, at)); err != nil {
			t.Fatal(err)
		}
	}
	mustSymlink(host, "link.log")
	mustSymlink(filepath.Join(filepath.Dir(host), "new-file"), "dangling.log")
	mustSymlink(filepath.Dir(host), "linkdir")
	if err := os.Link(host, filepath.Join(dir, "hard.log")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo.log"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"link.log", "dangling.log", "linkdir/host-file", "linkdir/x.log", "../host-file", "/etc/passwd", "hard.log", "fifo.log", ""} {
		f, _, err := d.CreateAppend(name, 0o640)
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("CreateAppend(%q): %v, want ErrUnsafe", name, err)
		}
		if f != nil {
			f.Close()
		}
	}
	for _, name := range []string{"linkdir/sub", "../up", "linkdir"} {
		if err := d.MkdirAll(name, 0o755); !errors.Is(err, ErrUnsafe) {
			t.Errorf("MkdirAll(%q): %v, want ErrUnsafe", name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(host), "new-file")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dangling symlink's target was made: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(host), "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dir was made through a symlink: %v", err)
	}
	hostUnchanged(t, host)
	if _, err := OpenDir(filepath.Join(dir, "linkdir")); !errors.Is(err, ErrUnsafe) {
		t.Errorf("OpenDir of a symlink: %v, want ErrUnsafe", err)
	}
	if _, err := OpenDir(host); !errors.Is(err, ErrUnsafe) {
		t.Errorf("OpenDir of a file: %v, want ErrUnsafe", err)
	}
}

func TestRemoveIfSame(t *testing.T) {
	d, dir, host := setup(t)
	f, created, err := d.CreateAppend("0.log", 0o640)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	defer f.Close()
	// Replaced by a symlink since: the undo leaves it (and its target).
	if err := os.Remove(filepath.Join(dir, "0.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, filepath.Join(dir, "0.log")); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveIfSame("0.log", f); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "0.log")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink put there was removed: %v", err)
	}
	hostUnchanged(t, host)
	g, _, err := d.CreateAppend("1.log", 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := d.RemoveIfSame("1.log", g); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "1.log")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("own file not removed: %v", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	d, dir, host := setup(t)
	if err := os.Symlink(host, filepath.Join(dir, "exit.json")); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFileAtomic("exit.json", []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "exit.json"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("exit.json: %v %v", fi, err)
	}
	hostUnchanged(t, host)
	if b, _ := os.ReadFile(filepath.Join(dir, "exit.json")); string(b) != "{}" {
		t.Errorf("content %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left in dir: %v", ents)
	}
	if err := d.WriteFileAtomic("../x", nil, 0o600); !errors.Is(err, ErrUnsafe) {
		t.Errorf("WriteFileAtomic(../x): %v", err)
	}
	if err := d.Remove("exit.json"); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("exit.json"); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}
