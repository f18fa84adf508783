// Package checkpoint writes container checkpoint archives in the layout
// CRI-O and Podman write (read by checkpointctl): at the archive's top
// config.dump and spec.dump (JSON), checkpoint/ (CRIU's images),
// rootfs-diff.tar (the files the container added or changed), deleted.files
// (a JSON list of the image's files it removed), dump.log (CRIU's log),
// container.log (the CRI log) and stats-dump (CRIU's dump statistics). The
// archive is an uncompressed tar. It also runs CRIU (criu.go).
package checkpoint

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/safefile"
)

// Names in the archive beside checkpointctl's (metadata.*File).
const (
	// ContainerLogFile is the container's CRI log at checkpoint time.
	ContainerLogFile = "container.log"
	// StatsDumpFile is CRIU's statistics of the dump, copied from the
	// images dir to the top as CRI-O does.
	StatsDumpFile = "stats-dump"
)

// Config is config.dump.
type Config = metadata.ContainerConfig

// WriteJSON writes v as the file name in dir.
func WriteJSON(dir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// WriteRootfsDiff writes the container's changes to its image, its overlay
// upper dir, as rootfs-diff.tar in dir, and the files it removed (the
// upper dir's whiteouts) as deleted.files (only when there are some, as
// CRI-O does). Paths in deleted.files are absolute in the container.
func WriteRootfsDiff(upperDir, dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, metadata.RootFsDiffTar), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("rootfs diff: %w", err)
	}
	defer f.Close()
	deleted, err := tarDiff(upperDir, f)
	if err != nil {
		return fmt.Errorf("rootfs diff of %s: %w", upperDir, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rootfs diff: %w", err)
	}
	if len(deleted) == 0 {
		return nil
	}
	return WriteJSON(dir, metadata.DeletedFilesFile, deleted)
}

// isWhiteout: overlayfs marks a removed lower file by a 0/0 character device.
func isWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return st.Rdev == 0
}

// tarDiff tars the tree at root (without root itself) into w, skipping
// whiteouts, which it returns as absolute paths.
func tarDiff(root string, w io.Writer) (deleted []string, err error) {
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if isWhiteout(fi) {
			deleted = append(deleted, "/"+filepath.ToSlash(rel))
			return nil
		}
		return addEntry(tw, path, filepath.ToSlash(rel), fi)
	})
	if err != nil {
		return nil, err
	}
	return deleted, tw.Close()
}

// addEntry adds the file at path (described by fi, not followed if a
// symlink) to tw as name.
func addEntry(tw *tar.Writer, path, name string, fi fs.FileInfo) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	// Numeric ids only: the node's user names mean nothing in the container.
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	// O_NOFOLLOW: the tree is the container's; a file swapped for a
	// symlink since the walk must not make berth read a node file.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Pack writes the tree at dir (its contents, not dir itself) as a tar to w.
func Pack(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return addEntry(tw, path, filepath.ToSlash(rel), fi)
	})
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	return tw.Close()
}

// Target is the archive file being written at the requested location.
type Target struct {
	File *os.File
	root *safefile.Dir
	rel  string
}

// CreateTarget makes the archive file at path, a new file: the request
// names it, so it is treated as hostile. path must be absolute and clean,
// no component may be a symlink, the file must not exist (AlreadyExists),
// its directory must (InvalidArgument), and it may not be below any of
// refused (berth's own dirs) or the kernel's file systems.
func CreateTarget(path string, refused []string) (*Target, error) {
	if path == "" || !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return nil, fmt.Errorf("checkpoint location %q must be a clean absolute file path: %w", path, errdefs.ErrInvalidArgument)
	}
	for _, dir := range append([]string{"/proc", "/sys", "/dev"}, refused...) {
		if dir != "" && (path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")) {
			return nil, fmt.Errorf("checkpoint location %s is below %s, where berth does not write archives: %w", path, dir, errdefs.ErrInvalidArgument)
		}
	}
	root, err := safefile.OpenDir("/")
	if err != nil {
		return nil, fmt.Errorf("checkpoint location: %w", err)
	}
	rel := strings.TrimPrefix(path, "/")
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		root.Close()
		switch {
		case errors.Is(err, fs.ErrExist):
			return nil, fmt.Errorf("checkpoint location %s exists already: %w", path, errdefs.ErrAlreadyExists)
		case errors.Is(err, safefile.ErrUnsafe):
			return nil, fmt.Errorf("checkpoint location: %w: %w", err, errdefs.ErrInvalidArgument)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("checkpoint location %s: its directory does not exist: %w", path, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("checkpoint location: %w", err)
	}
	return &Target{File: f, root: root, rel: rel}, nil
}

// Commit syncs and closes the archive.
func (t *Target) Commit() error {
	defer t.root.Close()
	if err := t.File.Sync(); err != nil {
		t.File.Close()
		return fmt.Errorf("sync %s: %w", t.File.Name(), err)
	}
	return t.File.Close()
}

// Discard removes the archive file (if it still is the one made) and
// closes it: a failed checkpoint leaves nothing behind.
func (t *Target) Discard() error {
	defer t.root.Close()
	defer t.File.Close()
	return t.root.RemoveIfSame(t.rel, t.File)
}
