package containerinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// root resolves paths inside the container's rootfs so that no symlink
// (or ".." or magic link) leads out of it: openat2 with RESOLVE_IN_ROOT,
// one syscall per lookup, or filepath-securejoin on kernels without
// openat2. Handles are O_PATH file descriptors.
type root struct {
	fd        int
	noOpenat2 bool
}

func openRoot(path string) (*root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	return &root{fd: fd}, nil
}

func (r *root) close() { unix.Close(r.fd) }

func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// fromFile takes the fd out of a file that securejoin returned.
func fromFile(f *os.File, err error) (int, error) {
	if err != nil {
		return -1, err
	}
	defer f.Close()
	return unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
}

// open resolves p (a path in the container) to an O_PATH handle.
func (r *root) open(p string) (int, error) {
	if !r.noOpenat2 {
		fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if !errors.Is(err, unix.ENOSYS) {
			return fd, err
		}
		r.noOpenat2 = true
	}
	f, err := r.file()
	if err != nil {
		return -1, err
	}
	defer f.Close()
	return fromFile(pathrs.OpenatInRoot(f, p))
}

// file is a copy of the root handle as an *os.File for securejoin.
func (r *root) file() (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(r.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "rootfs"), nil
}

// mkdirAll makes directory p and its missing parents inside the rootfs and
// returns a handle of it. A component made here is opened without
// following symlinks, so a symlink swapped in cannot redirect it.
func (r *root) mkdirAll(p string, mode uint32) (int, error) {
	fd, err := r.open(p)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	if r.noOpenat2 {
		f, err := r.file()
		if err != nil {
			return -1, err
		}
		defer f.Close()
		return fromFile(pathrs.MkdirAllHandle(f, p, os.FileMode(mode)))
	}
	parent, err := r.mkdirAll(filepath.Dir(filepath.Clean("/"+p)), mode)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	name := filepath.Base(p)
	if err := unix.Mkdirat(parent, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("mkdir %s: %w", p, err)
	}
	return unix.Openat2(parent, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
}

// createFile makes an empty file at p (parents as needed) unless something
// is there, and returns a handle of what is at p.
func (r *root) createFile(p string) (int, error) {
	fd, err := r.open(p)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, err := r.mkdirAll(filepath.Dir(filepath.Clean("/"+p)), 0o755)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	name := filepath.Base(p)
	f, err := unix.Openat(parent, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s: %w", p, err)
	}
	if err == nil {
		unix.Close(f)
	}
	return r.open(p)
}

// dirFd reopens an O_PATH directory handle as a real directory fd, for
// the *at calls that do not take O_PATH handles.
func dirFd(fd int) (int, error) {
	return unix.Openat(fd, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
}
