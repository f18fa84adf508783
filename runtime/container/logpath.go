package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/safefile"
)

// checkLogPath refuses, before any work, a log path the shim would refuse
// to open: the pod's log directory must be absolute and, when it exists, a
// directory that is not a symlink, and no component of the log path below
// it a symlink; when it is missing, its deepest existing ancestor must be a
// directory that is not a symlink (makeLogDir makes it there). The shim's
// open (runtime/crilog) is what protects the node; this names the field
// early and changes nothing.
func checkLogPath(dir, name string) error {
	if !filepath.IsAbs(dir) {
		return invalid("pod log directory %q is not absolute", dir)
	}
	d, err := safefile.OpenDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		base, _, err := openLogDirBase(dir)
		if err != nil {
			return err
		}
		base.Close()
		return nil
	}
	if err != nil {
		return invalid("pod log directory: %v", err)
	}
	defer d.Close()
	f, err := d.OpenFile(name, unix.O_PATH, 0)
	if errors.Is(err, safefile.ErrUnsafe) {
		return invalid("log path %q: %v", name, err)
	}
	if err == nil {
		f.Close()
	}
	return nil
}

// makeLogDir makes the pod's log directory when it is missing: the kubelet
// makes it, a client that did not (crictl) gets it made, as containerd
// does. It is made below its deepest existing ancestor without following a
// symlink there or in what it makes: a symlink planted in its parents must
// not have berth, as root, make directories elsewhere.
func makeLogDir(dir string) error {
	base, rel, err := openLogDirBase(dir)
	if err != nil {
		return err
	}
	defer base.Close()
	if err := base.MkdirAll(rel, 0o755); err != nil {
		if errors.Is(err, safefile.ErrUnsafe) {
			return invalid("pod log directory %s: %v", dir, err)
		}
		return fmt.Errorf("make pod log directory %s: %w", dir, err)
	}
	return nil
}

// openLogDirBase opens the deepest existing ancestor of the (absolute) log
// directory dir, or dir itself, which must be a directory and not a
// symlink, and gives the path of dir below it.
func openLogDirBase(dir string) (*safefile.Dir, string, error) {
	dir = filepath.Clean(dir)
	base := dir
	for {
		_, err := os.Lstat(base)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) || base == filepath.Dir(base) {
			return nil, "", fmt.Errorf("pod log directory %s: %w", dir, err)
		}
		base = filepath.Dir(base)
	}
	d, err := safefile.OpenDir(base)
	if err != nil {
		if errors.Is(err, safefile.ErrUnsafe) {
			return nil, "", invalid("pod log directory %s: %v", dir, err)
		}
		return nil, "", fmt.Errorf("pod log directory %s: %w", dir, err)
	}
	rel, err := filepath.Rel(base, dir)
	if err != nil {
		d.Close()
		return nil, "", fmt.Errorf("pod log directory %s: %w", dir, err)
	}
	return d, rel, nil
}
