package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// whiteout notes what .wh.<name> and .wh..wh..opq hide; hideLower applies
// it once the whole layer is unpacked. A whiteout hides only what lower
// layers hold, never what its own layer adds, before or after it in the tar
// (OCI image-spec, "Whiteouts"), so it cannot be applied when it is read.
func (u *unpacker) whiteout(name, base string, hdr *tar.Header) error {
	dir := path.Dir(name)
	if dir == "." {
		dir = ""
	}
	if base == opaqueMarker {
		u.hide = append(u.hide, hidden{name: dir, opaque: true})
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other aufs bookkeeping (.wh..wh.plnk ...) has no overlay meaning
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("%w: whiteout %q", ErrUnsafe, name)
	}
	u.hide = append(u.hide, hidden{name: path.Join(dir, target), hdr: *hdr})
	return nil
}

// hidden is a path whose lower layers' content the layer hides: all of it
// (a whiteout), or the children of a directory (opaque).
type hidden struct {
	name   string
	opaque bool
	hdr    tar.Header
}

// hideLower turns the layer's whiteouts into overlayfs ones. Where the layer
// itself has nothing at the path, a whiteout becomes a 0:0 character device;
// where it has a directory (of its own entries, or one that holds them), the
// directory becomes opaque, so that it shows only this layer's entries;
// where it has anything else, that entry already hides the lower one.
func (u *unpacker) hideLower() error {
	for _, h := range u.hide {
		if err := u.hideOne(h); err != nil {
			return fmt.Errorf("whiteout of %q: %w", h.name, err)
		}
	}
	return nil
}

func (u *unpacker) hideOne(h hidden) error {
	if h.name == "" {
		root, _, err := u.parentOf(opaqueMarker, false)
		if err != nil {
			return err
		}
		return u.markOpaque(root)
	}
	if under, err := u.underNonDir(h.name); err != nil || under {
		// A symlink or file of the layer above the path hides it all.
		return err
	}
	parent, base, err := u.parentOf(h.name, true)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	err = unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT) && h.opaque:
		if err := unix.Mkdirat(parent, base, 0o755); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		u.stats.Inodes++
	case errors.Is(err, unix.ENOENT):
		if err := unix.Mknodat(parent, base, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		if err := unix.Fchownat(parent, base, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		u.stats.Inodes++
		return u.setTimes(parent, base, &h.hdr)
	case err != nil:
		return fmt.Errorf("stat: %w", err)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return nil
	}
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	return u.markOpaque(fd)
}

// underNonDir tells whether the layer holds something other than a
// directory above name (so that nothing below name is reached through it).
func (u *unpacker) underNonDir(name string) (bool, error) {
	for i := range len(name) {
		if name[i] != '/' {
			continue
		}
		fi, err := u.root.Lstat(name[:i])
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, u.rootErr(err)
		}
		if !fi.IsDir() {
			return true, nil
		}
	}
	return false, nil
}

func (u *unpacker) markOpaque(fd int) error {
	if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("mark opaque: %w", err)
	}
	return nil
}
