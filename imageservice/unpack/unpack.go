// Package unpack extracts one image layer (an uncompressed tar stream) into
// its own directory, converting OCI whiteouts into overlayfs ones so the
// directory can serve as an overlay lower dir.
//
// Every path is resolved inside the layer directory with os.Root, and every
// change is made relative to a directory file descriptor obtained that way:
// a tar entry with an absolute name, a ".." component, or whose parent
// resolves (through a symlink) outside the directory fails the layer with
// ErrUnsafe. Names of hardlink targets are held to the same rule.
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
)

// ErrUnsafe marks a layer that tries to reach outside its directory or is
// otherwise malformed.
var ErrUnsafe = fmt.Errorf("%w: unsafe layer", errdefs.ErrInvalidArgument)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// Stats sums what a layer holds.
type Stats struct {
	Size   int64 // bytes of regular file content
	Inodes int64 // entries created
}

type dirTimes struct {
	name         string
	atime, mtime time.Time
}

type unpacker struct {
	ctx   context.Context
	root  *os.Root
	dirs  map[string]*os.File
	times []dirTimes
	buf   []byte
	stats Stats
	hide  []hidden
}

// Unpack extracts the tar stream r into dir, which must exist. It stops at
// the end-of-archive marker, leaving whatever follows in r unread.
func Unpack(ctx context.Context, r io.Reader, dir string) (Stats, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("open layer dir: %w", err)
	}
	u := &unpacker{ctx: ctx, root: root, dirs: map[string]*os.File{}, buf: make([]byte, 256<<10)}
	defer func() {
		u.dropDirs()
		root.Close()
	}()
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return u.stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return u.stats, fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return u.stats, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	if err := u.hideLower(); err != nil {
		return u.stats, err
	}
	for _, d := range u.times {
		parent, base, err := u.parentOf(d.name, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue // a later entry replaced the directory or one above it
		}
		if err != nil {
			return u.stats, err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(d.atime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
		if err := unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
			return u.stats, fmt.Errorf("set times of %s: %w", d.name, err)
		}
	}
	return u.stats, nil
}

// Clean validates a tar entry name and returns it relative to the layer
// root ("" for the root itself).
func Clean(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute name %q", ErrUnsafe, name)
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafe)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: %q leaves the layer", ErrUnsafe, name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

func (u *unpacker) dropDirs() {
	for k, f := range u.dirs {
		f.Close()
		delete(u.dirs, k)
	}
}

// parentOf returns a descriptor of name's parent directory (created when
// create is set) and name's last component.
func (u *unpacker) parentOf(name string, create bool) (int, string, error) {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if f, ok := u.dirs[dir]; ok {
		return int(f.Fd()), base, nil
	}
	if create && dir != "." {
		if err := u.root.MkdirAll(dir, 0o755); err != nil {
			return -1, "", u.rootErr(err)
		}
	}
	f, err := u.root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", u.rootErr(err)
	}
	u.dirs[dir] = f
	return int(f.Fd()), base, nil
}

// rootErr turns os.Root's refusal to leave the root into ErrUnsafe.
func (u *unpacker) rootErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes from parent") {
		return fmt.Errorf("%w: %v", ErrUnsafe, err)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w: %v", ErrUnsafe, err)
	}
	return err
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := Clean(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if hdr.Typeflag == tar.TypeDir {
			return u.rootMeta(hdr)
		}
		return nil
	}
	base := path.Base(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(name, base, hdr)
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("%w: unsupported entry type %q", ErrUnsafe, hdr.Typeflag)
	}
	parent, base, err := u.parentOf(name, true)
	if err != nil {
		return err
	}
	isDir, err := u.clear(parent, name, base, hdr.Typeflag == tar.TypeDir)
	if err != nil {
		return err
	}
	if isDir {
		// The directory exists; the later entry's metadata wins.
		u.dropCached(name)
	}
	// clear may have dropped cached descriptors, including parent's.
	parent, base, err = u.parentOf(name, true)
	if err != nil {
		return err
	}
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !isDir {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
			u.stats.Inodes++
		}
		if err := u.meta(parent, base, hdr, mode, false); err != nil {
			return err
		}
		u.times = append(u.times, dirTimes{name: name, atime: orMtime(hdr.AccessTime, hdr.ModTime), mtime: hdr.ModTime})
		return nil
	case tar.TypeReg, tar.TypeGNUSparse:
		if err := u.file(parent, base, hdr, r, mode); err != nil {
			return err
		}
		u.stats.Size += hdr.Size
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		if err := u.meta(parent, base, hdr, mode, true); err != nil {
			return err
		}
	case tar.TypeLink:
		return u.hardlink(parent, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(parent, base, typ|mode, int(dev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		if err := u.meta(parent, base, hdr, mode, false); err != nil {
			return err
		}
	}
	u.stats.Inodes++
	return u.setTimes(parent, base, hdr)
}

func orMtime(t, mtime time.Time) time.Time {
	if t.IsZero() {
		return mtime
	}
	return t
}

// clear removes what an earlier entry of this layer left at name, unless
// both are directories; it reports whether a directory stays.
func (u *unpacker) clear(parent int, name, base string, wantDir bool) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if wantDir {
			return true, nil
		}
		u.dropDirs()
		if err := u.root.RemoveAll(name); err != nil {
			return false, fmt.Errorf("replace directory: %w", err)
		}
		return false, nil
	}
	if err := unix.Unlinkat(parent, base, 0); err != nil {
		return false, fmt.Errorf("replace: %w", err)
	}
	return false, nil
}

func (u *unpacker) dropCached(name string) {
	for k, f := range u.dirs {
		if k == name || strings.HasPrefix(k, name+"/") {
			f.Close()
			delete(u.dirs, k)
		}
	}
}

func (u *unpacker) file(parent int, base string, hdr *tar.Header, r io.Reader, mode uint32) error {
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if err := u.copyData(f, hdr, r); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range xattrs(hdr) {
		if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil && !ignorableXattrErr(err) {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return f.Close()
}

// copyData writes an entry's content. Sparse entries go through the tar
// reader's WriteTo, which seeks over holes instead of writing zeros: a small
// layer must not cost terabytes of writes. Long copies check ctx.
func (u *unpacker) copyData(f *os.File, hdr *tar.Header, r io.Reader) error {
	if isSparse(hdr) {
		if wt, ok := r.(io.WriterTo); ok {
			_, err := wt.WriteTo(f)
			return err
		}
	}
	for {
		if err := u.ctx.Err(); err != nil {
			return err
		}
		n, err := io.CopyBuffer(fileWriter{f}, io.LimitReader(r, 64<<20), u.buf)
		if err != nil {
			return err
		}
		if n < 64<<20 {
			return nil
		}
	}
}

func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// fileWriter hides os.File's ReadFrom so CopyBuffer uses our buffer.
type fileWriter struct{ f *os.File }

func (w fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (u *unpacker) hardlink(parent int, base string, hdr *tar.Header) error {
	target, err := Clean(hdr.Linkname)
	if err != nil {
		return err
	}
	if target == "" {
		return fmt.Errorf("%w: hardlink to the layer root", ErrUnsafe)
	}
	tparent, tbase, err := u.parentOf(target, false)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (u *unpacker) meta(parent int, base string, hdr *tar.Header, mode uint32, symlink bool) error {
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if !symlink {
		// The entry was just created by us in a private dir: not a symlink.
		if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	p := "/proc/self/fd/" + strconv.Itoa(parent) + "/" + base
	for k, v := range xattrs(hdr) {
		if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil && !ignorableXattrErr(err) && !symlink {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return nil
}

func (u *unpacker) setTimes(parent int, base string, hdr *tar.Header) error {
	ts := []unix.Timespec{unix.NsecToTimespec(orMtime(hdr.AccessTime, hdr.ModTime).UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (u *unpacker) rootMeta(hdr *tar.Header) error {
	f, err := u.root.OpenFile(".", os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown layer root: %w", err)
	}
	return unix.Fchmod(int(f.Fd()), uint32(hdr.Mode&0o7777))
}

// xattrs of an entry, less overlayfs' own: a layer must not be able to set
// redirects or opaque markers except through whiteout entries.
func xattrs(hdr *tar.Header) map[string]string {
	var m map[string]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = v
	}
	return m
}

func ignorableXattrErr(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM)
}
