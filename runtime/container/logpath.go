package container

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/safefile"
)

// checkLogPath refuses, before any work, a log path the shim would refuse
// to open: the pod's log directory must be absolute and, when it exists, a
// directory that is not a symlink, and no component of the log path below
// it a symlink. The shim's open (runtime/crilog) is what protects the
// node; this names the field early and changes nothing.
func checkLogPath(dir, name string) error {
	if !filepath.IsAbs(dir) {
		return invalid("pod log directory %q is not absolute", dir)
	}
	d, err := safefile.OpenDir(dir)
	if errors.Is(err, os.ErrNotExist) {
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
