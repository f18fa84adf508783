package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateDirWritableByOthersIsFixed(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	// The root inside it: berthd's own dirs are fixed before their parents
	// are judged.
	cfg, err := parse(t, "", "--state", state, "--root", filepath.Join(state, "root"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("state dir mode = %v, want 0755 (others' write bits removed)", st.Mode().Perm())
	}
	if len(cfg.warnings) != 1 || !strings.Contains(cfg.warnings[0], state) || !strings.Contains(cfg.warnings[0], "-rwxrwxrwx") {
		t.Errorf("warnings = %q, want one naming %s and its old mode", cfg.warnings, state)
	}
	// A dir already berthd's alone passes without a word.
	cfg, err = parse(t, "", "--state", state)
	if err != nil || len(cfg.warnings) != 0 {
		t.Errorf("second start: warnings %q, err %v; want none", cfg.warnings, err)
	}
}

func TestDirsOthersControlAreRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	for _, tc := range []struct {
		name  string
		setup func(parent string) // parent holds the dir berthd is given
		want  string
	}{
		{"parent writable by all", func(p string) { os.Chmod(p, 0o777) }, "writable by every user without the sticky bit"},
		{"parent writable by a group", func(p string) { os.Chown(p, 0, 100); os.Chmod(p, 0o775) }, "writable by group 100"},
		{"parent owned by another user", func(p string) { os.Chown(p, 1000, 0) }, "owned by uid 1000"},
		{"dir owned by another user", func(p string) { os.Chown(filepath.Join(p, "root"), 1000, 0) }, "owned by uid 1000, not by berthd's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "p")
			if err := os.MkdirAll(filepath.Join(parent, "root"), 0o755); err != nil {
				t.Fatal(err)
			}
			tc.setup(parent)
			root := filepath.Join(parent, "root")
			_, err := parse(t, "", "--root", root)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "root") {
				t.Fatalf("err = %v, want a config error about root saying %q", err, tc.want)
			}
			if _, ok := err.(*configError); !ok {
				t.Errorf("error %T is not a configError (exit 2)", err)
			}
			// Through a symlink in a safe dir, the real parent still counts.
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(root, link); err != nil {
				t.Fatal(err)
			}
			if _, err := parse(t, "", "--root", link); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("through a symlink: err = %v, want %q", err, tc.want)
			}
		})
	}
	// A sticky dir anyone can write (as /tmp) is a fine parent.
	parent := filepath.Join(t.TempDir(), "sticky")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := parse(t, "", "--root", filepath.Join(parent, "root")); err != nil {
		t.Errorf("root in a sticky dir: %v", err)
	}
}
