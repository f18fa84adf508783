package cgroupfs

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// ReadFile reads a small cgroup or /proc file with plain system calls
// (open, read until the end, close). os.ReadFile's *os.File also stats the
// file, sets it non-blocking and registers it with the runtime's poller
// (kernfs files are pollable) and deregisters it at close: twice the
// system calls, which a stats list of a node's pods pays thousands of times.
// Errors are *fs.PathError, so errors.Is(err, fs.ErrNotExist) holds as with
// os.ReadFile.
func ReadFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return ReadFd(fd, path)
}

// ReadFd reads fd to its end; name is for errors.
func ReadFd(fd int, name string) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
