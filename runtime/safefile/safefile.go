// Package safefile opens, creates and removes files on the node below a
// directory without following a symlink and without leaving that
// directory, for paths a request (or a container's user) can influence: a
// symlink or a hard link planted at such a path must not make berth, as
// root, write to a file elsewhere.
//
//	d, err := safefile.OpenDir(logDir)   // an existing directory, not a symlink
//	defer d.Close()
//	f, created, err := d.CreateAppend("web/0.log", 0o640)
//	...
//	if created { _ = d.RemoveIfSame("web/0.log", f) } // undo
//
// Every path below the directory is resolved with openat2(2) and
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS (Linux 5.6): no component may be a
// symlink, ".." may not climb out, and a rename racing the open cannot
// redirect it.
package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnsafe is wrapped by every refusal of a path: a symlink in it, a path
// that leaves its directory, a file that is not a regular one, or one with
// other hard links.
var ErrUnsafe = errors.New("unsafe path")

// resolve is how every path below a Dir is looked up.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Dir is an open directory that paths are resolved below.
type Dir struct {
	f    *os.File
	path string
}

// OpenDir opens path, which must be an existing directory whose last
// component is not a symlink.
func OpenDir(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
				return nil, fmt.Errorf("%s is a symlink, not a directory: %w", path, ErrUnsafe)
			}
			return nil, fmt.Errorf("%s is not a directory: %w", path, ErrUnsafe)
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &Dir{f: os.NewFile(uintptr(fd), path), path: path}, nil
}

// Path is the directory's path as it was opened.
func (d *Dir) Path() string { return d.path }

// Close closes the directory.
func (d *Dir) Close() error { return d.f.Close() }

func (d *Dir) fd() int { return int(d.f.Fd()) }

// local refuses a name that is not a plain relative path below the
// directory; openat2 would refuse it too, but the error names the cause.
func (d *Dir) local(name string) error {
	if name == "" || !filepath.IsLocal(name) {
		return fmt.Errorf("%q is not a path inside %s: %w", name, d.path, ErrUnsafe)
	}
	return nil
}

// openat2 opens name below d, retrying the EAGAIN that a concurrent rename
// elsewhere on the system can cause.
func (d *Dir) openat2(name string, flags int, mode uint32) (*os.File, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolve}
	for range 16 {
		fd, err := unix.Openat2(d.fd(), name, &how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			full := filepath.Join(d.path, name)
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
				return nil, fmt.Errorf("%s: a symlink or a path out of %s: %w", full, d.path, ErrUnsafe)
			}
			if errors.Is(err, unix.ENXIO) {
				// A FIFO without a reader or a socket (O_NONBLOCK).
				return nil, fmt.Errorf("%s is not a regular file: %w", full, ErrUnsafe)
			}
			return nil, &os.PathError{Op: "open", Path: full, Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), nil
	}
	return nil, &os.PathError{Op: "open", Path: filepath.Join(d.path, name), Err: unix.EAGAIN}
}

// OpenFile opens name below d with flag (os.O_* flags) and, when it
// creates the file, perm; no component of name may be a symlink.
func (d *Dir) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if err := d.local(name); err != nil {
		return nil, err
	}
	return d.openat2(name, flag, uint32(perm.Perm()))
}

// MkdirAll makes the directory name below d and those above it that are
// missing, each with perm; an existing component must be a directory and
// not a symlink.
func (d *Dir) MkdirAll(name string, perm os.FileMode) error {
	if name == "." {
		return nil
	}
	if err := d.local(name); err != nil {
		return err
	}
	parts := strings.Split(filepath.Clean(name), string(filepath.Separator))
	for i := range parts {
		sub := filepath.Join(parts[:i+1]...)
		dir, err := d.openat2(sub, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err == nil {
			dir.Close()
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		parent, err := d.openat2(filepath.Join(append([]string{"."}, parts[:i]...)...), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(int(parent.Fd()), parts[i], uint32(perm.Perm()))
		parent.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "mkdir", Path: filepath.Join(d.path, sub), Err: err}
		}
		// Made now or meanwhile by someone else: opening it refuses a
		// symlink put there.
		dir, err = d.openat2(sub, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		dir.Close()
	}
	return nil
}

// CreateAppend opens the regular file name below d for appending, making
// it (with perm) when it does not exist; created tells which. A file that
// exists must be a regular file with no other hard link (a link to a host
// file would have berth write to it). A FIFO or a device is refused
// without blocking on it.
func (d *Dir) CreateAppend(name string, perm os.FileMode) (f *os.File, created bool, err error) {
	if err := d.local(name); err != nil {
		return nil, false, err
	}
	const flags = unix.O_WRONLY | unix.O_APPEND | unix.O_NOCTTY | unix.O_NONBLOCK
	for range 4 {
		f, err = d.openat2(name, flags|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
		if err == nil {
			created = true
		} else if errors.Is(err, os.ErrExist) {
			// Removed meanwhile: ENOENT, and the next round creates it.
			if f, err = d.openat2(name, flags, 0); errors.Is(err, os.ErrNotExist) {
				continue
			}
		}
		break
	}
	if err != nil {
		return nil, false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || (!created && st.Nlink != 1) {
		f.Close()
		return nil, false, fmt.Errorf("%s is not a regular file of its own (mode %#o, %d links): %w", f.Name(), st.Mode, st.Nlink, ErrUnsafe)
	}
	// O_NONBLOCK only kept the open from waiting on a FIFO.
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, false, err
	}
	return f, created, nil
}

// RemoveIfSame removes name below d if it still is the file f: an undo
// removes what it made, never what was put at the path since.
func (d *Dir) RemoveIfSame(name string, f *os.File) error {
	if err := d.local(name); err != nil {
		return err
	}
	parent, err := d.openat2(filepath.Dir(name), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer parent.Close()
	base := filepath.Base(name)
	var want, at unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &want); err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if err := unix.Fstatat(int(parent.Fd()), base, &at, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "stat", Path: filepath.Join(d.path, name), Err: err}
	}
	if at.Dev != want.Dev || at.Ino != want.Ino {
		return nil
	}
	if err := unix.Unlinkat(int(parent.Fd()), base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// Remove removes the file (not a directory) name directly in d; a symlink
// there is removed itself, never what it points to. A missing file is no
// error.
func (d *Dir) Remove(name string) error {
	if strings.ContainsRune(name, filepath.Separator) || d.local(name) != nil {
		return fmt.Errorf("%q is not a name in %s: %w", name, d.path, ErrUnsafe)
	}
	if err := unix.Unlinkat(d.fd(), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// WriteFileAtomic replaces (or makes) the file name directly in d with
// data: written to a new temporary file in d, synced, renamed over name,
// and d synced, so that a crash leaves the old content or the new, whole.
// A symlink at name is replaced, never followed.
func (d *Dir) WriteFileAtomic(name string, data []byte, perm os.FileMode) (err error) {
	if strings.ContainsRune(name, filepath.Separator) || d.local(name) != nil {
		return fmt.Errorf("%q is not a name in %s: %w", name, d.path, ErrUnsafe)
	}
	var tmp string
	var f *os.File
	for i := range 16 {
		tmp = fmt.Sprintf(".%s.%d.%d.tmp", name, os.Getpid(), i)
		f, err = d.openat2(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = unix.Unlinkat(d.fd(), tmp, 0)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(d.path, name), err)
	}
	if err := unix.Renameat(d.fd(), tmp, d.fd(), name); err != nil {
		return &os.PathError{Op: "rename", Path: filepath.Join(d.path, name), Err: err}
	}
	_ = d.f.Sync()
	return nil
}
