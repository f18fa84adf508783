package crilog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/safefile"
)

func newFile(t *testing.T) (*File, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	f, err := Open(dir, "0.log")
	if err != nil {
		t.Fatal(err)
	}
	f.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC) }
	t.Cleanup(func() { f.Close() })
	return f, path
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCopyFormat(t *testing.T) {
	const ts = "2026-01-02T03:04:05.0000006Z"
	cases := []struct {
		name, in string
		max      int
		want     []string
	}{
		{"lines", "a\nbc\n", 0, []string{ts + " stdout F a", ts + " stdout F bc"}},
		{"empty line kept", "a\n\nb\n", 0, []string{ts + " stdout F a", ts + " stdout F ", ts + " stdout F b"}},
		{"no newline at EOF: partial", "a\ntail", 0, []string{ts + " stdout F a", ts + " stdout P tail"}},
		{"CRLF line end dropped", "a\r\nb\n", 0, []string{ts + " stdout F a", ts + " stdout F b"}},
		{"line under the limit", "abcdefghij\n", 16, []string{ts + " stdout F abcdefghij"}},
		{"nothing", "", 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, path := newFile(t)
			if err := f.Copy("stdout", strings.NewReader(tc.in), tc.max); err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(read(t, path), "\n"), "\n")
			if len(tc.want) == 0 {
				if s := read(t, path); s != "" {
					t.Fatalf("got %q, want nothing", s)
				}
				return
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestLongLineSplitsIntoPartials(t *testing.T) {
	f, path := newFile(t)
	line := strings.Repeat("x", 40) + "\n"
	if err := f.Copy("stderr", strings.NewReader(line), 16); err != nil {
		t.Fatal(err)
	}
	var tags, text string
	for _, rec := range strings.Split(strings.TrimSuffix(read(t, path), "\n"), "\n") {
		parts := strings.SplitN(rec, " ", 4)
		if len(parts) != 4 || parts[1] != "stderr" {
			t.Fatalf("bad record %q", rec)
		}
		tags += parts[2]
		text += parts[3]
	}
	if tags != "PPF" || text != strings.Repeat("x", 40) {
		t.Errorf("tags %q text %q; want PPF and the whole line", tags, text)
	}
}

func TestReopenAfterRotation(t *testing.T) {
	f, path := newFile(t)
	if err := f.Copy("stdout", strings.NewReader("one\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := f.Copy("stdout", strings.NewReader("two\n"), 0); err != nil {
		t.Fatal(err)
	}
	if s := read(t, path); !strings.HasSuffix(s, " stdout F two\n") || strings.Contains(s, "one") {
		t.Errorf("new file = %q, want only the line after rotation", s)
	}
	if s := read(t, path+".1"); !strings.Contains(s, "one") {
		t.Errorf("rotated file = %q", s)
	}
}

// TestUnsafePaths: a symlink at the log path is refused and nothing is
// written through it; a failed reopen keeps the current file; Discard
// removes only a file Open made.
func TestUnsafePaths(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(t.TempDir(), "host")
	if err := os.WriteFile(host, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, filepath.Join(dir, "0.log")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, "0.log"); !errors.Is(err, safefile.ErrUnsafe) {
		t.Errorf("Open through a symlink: %v", err)
	}
	if _, err := Open(dir, "../x.log"); !errors.Is(err, safefile.ErrUnsafe) {
		t.Errorf("Open of ../x.log: %v", err)
	}

	f, err := Open(dir, "web/1.log")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Copy("stdout", strings.NewReader("one\n"), 0); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "web/1.log")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, path); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); !errors.Is(err, safefile.ErrUnsafe) {
		t.Errorf("Reopen through a symlink: %v", err)
	}
	if err := f.Copy("stdout", strings.NewReader("two\n"), 0); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path+".1"); strings.Count(got, "\n") != 2 {
		t.Errorf("kept file after a failed reopen: %q", got)
	}
	if got := read(t, host); got != "host\n" {
		t.Errorf("host file written through a symlink: %q", got)
	}
	// Made by Open, then renamed away: Discard leaves what is at the path.
	if err := f.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the symlink at the path was removed: %v", err)
	}

	g, err := Open(dir, "web/2.log")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "web/2.log")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Discard left the file it made: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "3.log"), []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	h, err := Open(dir, "3.log")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Discard(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "3.log")); got != "old\n" {
		t.Errorf("Discard touched a file it did not make: %q", got)
	}
}
