package cgroupfs

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"math"
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

// Keyed returns the values of keys in a flat-keyed cgroup file ("key
// value" lines), 0 for a key not there. A stats read wants a few of
// memory.stat's dozens of lines: FlatKeyed's map cost an allocation a line.
func Keyed(data []byte, keys ...string) []uint64 {
	out := make([]uint64, len(keys))
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		for i, want := range keys {
			if string(k) == want {
				if n, ok := parseUint(bytes.TrimSpace(v)); ok {
					out[i] = n
				}
				break
			}
		}
	}
	return out
}

// parseUint parses decimal digits without the string strconv needs.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
