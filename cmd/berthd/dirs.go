package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// secureDirs makes sure no other user can change what berthd keeps in its
// root, state and socket dirs: another user who could write there, or
// rename a dir on the way to them, could swap the files berthd opens as
// root (a pod's resolv.conf, an exit record, an image layer).
//
// As Docker does with its root (it resets the mode at every start) and
// containerd and CRI-O do by creating theirs 0700/0711, berthd owns these
// dirs: one others can write loses group and other write permission, with a
// warning. A dir owned by another user, or a parent dir that another user
// owns or can write without the sticky bit, is not berthd's to change: that
// is a configuration error naming it. It returns the warnings.
func secureDirs(dirs [][2]string) ([]string, error) {
	var warnings []string
	euid := uint32(os.Geteuid())
	real := make([]string, len(dirs))
	// berthd's own dirs first: one may be another's parent.
	for i, d := range dirs {
		name, dir := d[0], d[1]
		var err error
		if real[i], err = filepath.EvalSymlinks(dir); err != nil {
			return nil, configErrorf("%s %q: %v", name, dir, err)
		}
		st, err := statOwner(real[i])
		if err != nil {
			return nil, configErrorf("%s %q: %v", name, dir, err)
		}
		if st.Uid != euid && st.Uid != 0 {
			return nil, configErrorf("%s %q: owned by uid %d, not by berthd's (%d): that user could change berthd's files", name, dir, st.Uid, euid)
		}
		if mode := os.FileMode(st.Mode).Perm(); mode&0o022 != 0 {
			fixed := mode &^ 0o022
			if err := os.Chmod(real[i], fixed); err != nil {
				return nil, configErrorf("%s %q: writable by others (mode %v) and chmod failed: %v", name, dir, mode, err)
			}
			warnings = append(warnings, fmt.Sprintf("%s %s was writable by others (mode %v): changed to %v", name, dir, mode, fixed))
		}
	}
	for i, d := range dirs {
		name, dir := d[0], d[1]
		// Both the parents as named and as resolved: a symlink on the way
		// is only as safe as the dir holding it.
		for _, p := range append(parents(dir), parents(real[i])...) {
			if err := checkParent(p, euid); err != nil {
				return nil, configErrorf("%s %q: parent %s %v", name, dir, p, err)
			}
		}
	}
	return warnings, nil
}

// checkParent refuses a dir that a user other than root and berthd's own
// could use to replace what lies below it: by owning it, or by writing to
// it without the sticky bit (which keeps others from renaming entries they
// do not own, as in /tmp).
func checkParent(p string, euid uint32) error {
	st, err := statOwner(p)
	if err != nil {
		return err
	}
	if st.Uid != 0 && st.Uid != euid {
		return fmt.Errorf("is owned by uid %d: that user could replace what is below it", st.Uid)
	}
	mode := os.FileMode(st.Mode)
	if st.Mode&syscall.S_ISVTX != 0 {
		return nil
	}
	if mode.Perm()&0o002 != 0 {
		return fmt.Errorf("is writable by every user without the sticky bit (mode %v): others could replace what is below it", mode.Perm())
	}
	if mode.Perm()&0o020 != 0 && st.Gid != 0 {
		return fmt.Errorf("is writable by group %d without the sticky bit (mode %v): its members could replace what is below it", st.Gid, mode.Perm())
	}
	return nil
}

func statOwner(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	return &st, nil
}

// parents are p's ancestors up to /, nearest first.
func parents(p string) []string {
	var out []string
	for d := filepath.Dir(filepath.Clean(p)); ; d = filepath.Dir(d) {
		out = append(out, d)
		if d == "/" || d == "." {
			return out
		}
	}
}
