package checkpoint

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
)

func readTar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	got := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			got[h.Name] = "-> " + h.Linkname
		case tar.TypeDir:
			got[h.Name] = "dir"
		default:
			got[h.Name] = string(b)
		}
	}
}

func TestWriteRootfsDiff(t *testing.T) {
	upper, out := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "etc/app"), 0o755))
	must(os.WriteFile(filepath.Join(upper, "etc/app/conf"), []byte("changed"), 0o644))
	must(os.Symlink("/etc/passwd", filepath.Join(upper, "link")))
	// Whiteouts: what overlayfs leaves for a removed lower file.
	must(unix.Mknod(filepath.Join(upper, "etc/removed"), unix.S_IFCHR, 0))
	must(unix.Mknod(filepath.Join(upper, "gone"), unix.S_IFCHR, 0))

	must(WriteRootfsDiff(upper, out))
	f, err := os.Open(filepath.Join(out, metadata.RootFsDiffTar))
	must(err)
	defer f.Close()
	got := readTar(t, f)
	want := map[string]string{"etc/": "dir", "etc/app/": "dir", "etc/app/conf": "changed", "link": "-> /etc/passwd"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rootfs-diff.tar = %v, want %v", got, want)
	}
	deleted, _, err := metadata.ReadContainerCheckpointDeletedFiles(out)
	must(err)
	sort.Strings(deleted)
	if want := []string{"/etc/removed", "/gone"}; !reflect.DeepEqual(deleted, want) {
		t.Errorf("deleted.files = %v, want %v", deleted, want)
	}
}

func TestWriteRootfsDiffNoDeletions(t *testing.T) {
	upper, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(upper, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteRootfsDiff(upper, out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, metadata.DeletedFilesFile)); !os.IsNotExist(err) {
		t.Errorf("deleted.files written without deletions: %v", err)
	}
}

func TestPackReadByCheckpointctl(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{ID: "abc", Name: "counter", RootfsImageName: "busybox", OCIRuntime: "berth"}
	if err := WriteJSON(dir, metadata.ConfigDumpFile, cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, metadata.CheckpointDirectory), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, metadata.CheckpointDirectory, "pages-1.img"), []byte("pages"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	got := readTar(t, bytes.NewReader(buf.Bytes()))
	if got["checkpoint/"] != "dir" || got["checkpoint/pages-1.img"] != "pages" {
		t.Errorf("archive = %v", got)
	}
	// Unpacked, checkpointctl's reader finds the config.
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, metadata.ConfigDumpFile), []byte(got[metadata.ConfigDumpFile]), 0o600); err != nil {
		t.Fatal(err)
	}
	read, _, err := metadata.ReadContainerCheckpointConfigDump(out)
	if err != nil {
		t.Fatal(err)
	}
	if read.ID != "abc" || read.Name != "counter" || read.OCIRuntime != "berth" {
		t.Errorf("config.dump read back as %+v", read)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(got[metadata.ConfigDumpFile]), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "name", "rootfsImageName", "runtime", "checkpointedTime"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("config.dump lacks %q: %s", k, got[metadata.ConfigDumpFile])
		}
	}
}

func TestCreateTarget(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "cp.tar")
	tg, err := CreateTarget(ok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateTarget(ok, nil); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}
	if err := tg.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ok); !os.IsNotExist(err) {
		t.Errorf("discarded target still there: %v", err)
	}

	if err := os.Symlink(dir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd-nonexistent", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	berthRoot := filepath.Join(dir, "berth")
	for _, tc := range []struct {
		path string
		code error
	}{
		{"", errdefs.ErrInvalidArgument},
		{"relative.tar", errdefs.ErrInvalidArgument},
		{dir + "/x/../cp.tar", errdefs.ErrInvalidArgument},
		{"/proc/self/cp.tar", errdefs.ErrInvalidArgument},
		{"/dev/shm/cp.tar", errdefs.ErrInvalidArgument},
		{filepath.Join(berthRoot, "containers/x.tar"), errdefs.ErrInvalidArgument},
		{filepath.Join(dir, "link", "cp.tar"), errdefs.ErrInvalidArgument},
		{filepath.Join(dir, "dangling"), errdefs.ErrAlreadyExists}, // O_EXCL: never followed
		{filepath.Join(dir, "missing", "cp.tar"), errdefs.ErrInvalidArgument},
		{dir, errdefs.ErrAlreadyExists},
	} {
		tg, err := CreateTarget(tc.path, []string{berthRoot})
		if err == nil {
			tg.Discard()
		}
		if !errors.Is(err, tc.code) {
			t.Errorf("CreateTarget(%q) = %v, want %v", tc.path, err, tc.code)
		}
	}
	if _, err := os.Stat("/etc/passwd-nonexistent"); !os.IsNotExist(err) {
		t.Errorf("a dangling symlink's target was created")
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "dangling link" {
		t.Errorf("refusals left files: %v", names)
	}
}
