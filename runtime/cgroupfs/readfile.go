package cgroupfs

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"sync"

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

// bufs are ReadFd's read buffers: the result is a copy of the bytes read,
// so that a read of a 10-byte counter allocates 10 bytes, not a zeroed page.
var bufs = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

// ReadFd reads fd to its end; name is for errors.
func ReadFd(fd int, name string) ([]byte, error) {
	bp := bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 64<<10 {
			*bp = buf[:cap(buf)]
			bufs.Put(bp)
		}
	}()
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
			return bytes.Clone(buf), nil
		}
		buf = buf[:len(buf)+n]
	}
}

// Subdirs lists the directories in dir (a cgroup's children) with getdents
// alone: os.ReadDir's *os.File costs as many system calls again.
func Subdirs(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	var out []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getdents", Path: dir, Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		// linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return nil, &fs.PathError{Op: "getdents", Path: dir, Err: unix.EIO}
			}
			typ, name := b[18], b[19:reclen]
			b = b[reclen:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if string(name) == "." || string(name) == ".." {
				continue
			}
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				if unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
					continue
				}
				typ = unix.DT_DIR
			}
			if typ == unix.DT_DIR {
				out = append(out, string(name))
			}
		}
	}
}
