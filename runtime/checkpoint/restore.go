package checkpoint

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/safefile"
)

// DescriptorsFile, in the images dir, lists what the container's fds 0-2
// were at the dump (readlink of /proc/PID/fd/N, as runc records them): a
// restore hands new pipes in for the old ones.
const DescriptorsFile = "descriptors.json"

// RestoreLog is CRIU's log of a restore, beside the images dir.
const RestoreLog = "restore.log"

// IsArchiveRef says whether a CreateContainer image names a checkpoint
// archive (a node path) rather than an image.
func IsArchiveRef(ref string) bool { return strings.HasPrefix(ref, "/") }

// OpenArchive opens the archive a request names: a regular file that no
// symlink leads to.
func OpenArchive(path string) (*os.File, error) {
	if filepath.Clean(path) != path || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("checkpoint archive %q must be a clean absolute path: %w", path, errdefs.ErrInvalidArgument)
	}
	root, err := safefile.OpenDir("/")
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.OpenFile(strings.TrimPrefix(path, "/"), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint archive %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("checkpoint archive: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("checkpoint archive %s is not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	return f, nil
}

// maxMeta bounds config.dump and spec.dump as read from an archive.
const maxMeta = 4 << 20

// ReadMeta reads config.dump and spec.dump from an archive.
func ReadMeta(r io.Reader) (*Config, *specs.Spec, error) {
	var cfg *Config
	var spec *specs.Spec
	tr := tar.NewReader(r)
	for cfg == nil || spec == nil {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read checkpoint archive: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		var v any
		switch strings.TrimPrefix(h.Name, "./") {
		case metadata.ConfigDumpFile:
			cfg = &Config{}
			v = cfg
		case metadata.SpecDumpFile:
			spec = &specs.Spec{}
			v = spec
		default:
			continue
		}
		if err := json.NewDecoder(io.LimitReader(tr, maxMeta)).Decode(v); err != nil {
			return nil, nil, fmt.Errorf("checkpoint archive's %s: %v: %w", h.Name, err, errdefs.ErrInvalidArgument)
		}
	}
	if cfg == nil || spec == nil || spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, nil, fmt.Errorf("not a container checkpoint archive (no config.dump, or spec.dump without a process): %w", errdefs.ErrInvalidArgument)
	}
	return cfg, spec, nil
}

// Unpack extracts an archive into dir (new and empty): directories and
// regular files only, every name below dir.
func Unpack(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read checkpoint archive: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("checkpoint archive entry %q leaves the archive: %w", h.Name, errdefs.ErrInvalidArgument)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("unpack %s: %w", name, err)
			}
		default:
			return fmt.Errorf("checkpoint archive entry %q is neither a file nor a directory: %w", h.Name, errdefs.ErrInvalidArgument)
		}
	}
}

// ApplyRootfsDiff replays an unpacked archive's rootfs changes (dir's
// rootfs-diff.tar and deleted.files) onto the container's mounted rootfs,
// before its process exists. Every path is resolved inside rootfs
// (os.Root: a symlink in the rootfs cannot lead out of it).
func ApplyRootfsDiff(dir, rootfs string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer root.Close()
	if data, err := os.ReadFile(filepath.Join(dir, metadata.DeletedFilesFile)); err == nil {
		var deleted []string
		if err := json.Unmarshal(data, &deleted); err != nil {
			return fmt.Errorf("deleted.files: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		for _, name := range deleted {
			rel, ok := inRoot(name)
			if !ok {
				continue
			}
			if err := root.RemoveAll(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", name, err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.Open(filepath.Join(dir, metadata.RootFsDiffTar))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rootfs-diff.tar: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		rel, ok := inRoot(h.Name)
		if !ok {
			continue
		}
		if err := applyEntry(root, rel, h, tr); err != nil {
			return fmt.Errorf("rootfs-diff.tar: %s: %w", h.Name, err)
		}
	}
}

// inRoot makes an archive's path (absolute or not, with .. that cannot
// climb above /) relative to the rootfs; false for the rootfs itself.
func inRoot(name string) (string, bool) {
	rel := strings.TrimPrefix(filepath.Clean("/"+name), "/")
	return rel, rel != ""
}

func applyEntry(root *os.Root, rel string, h *tar.Header, r io.Reader) error {
	if parent := filepath.Dir(rel); parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	mode := os.FileMode(h.Mode&0o777) | modeBits(uint32(h.Mode))
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case tar.TypeReg:
		if err := root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := root.RemoveAll(rel); err != nil {
			return err
		}
		return lchown(root.Symlink(h.Linkname, rel), root, rel, h)
	case tar.TypeLink:
		target, ok := inRoot(h.Linkname)
		if !ok {
			return fmt.Errorf("hard link to the rootfs itself: %w", errdefs.ErrInvalidArgument)
		}
		if err := root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return root.Link(target, rel)
	default:
		return nil // devices, fifos and sockets: not replayed
	}
	if err := lchown(nil, root, rel, h); err != nil {
		return err
	}
	return root.Chmod(rel, mode)
}

func lchown(err error, root *os.Root, rel string, h *tar.Header) error {
	if err != nil {
		return err
	}
	return root.Lchown(rel, h.Uid, h.Gid)
}

// modeBits carries setuid, setgid and sticky over into os.FileMode.
func modeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

// RestoreOpts say how CRIU restores a checkpoint into a new container.
type RestoreOpts struct {
	ImagesDir, WorkDir string
	// Root is the new container's mounted rootfs.
	Root string
	// Mounts maps external mount keys (container paths) to node paths.
	Mounts map[string]string
	// InheritFDs maps a key of the images (extNetNs, pipe:[ino]) to the
	// fd the restore is given for it.
	InheritFDs map[string]int
	// JoinNS maps a namespace kind (ipc, uts) to the path to join.
	JoinNS   map[string]string
	ShellJob bool
}

// RestoreArgs are the arguments of `criu restore` for o; the pid of the
// restored init lands in WorkDir/restore.pid.
func RestoreArgs(o RestoreOpts) []string {
	args := []string{"restore", "--restore-detached",
		"--images-dir", o.ImagesDir, "--work-dir", o.WorkDir,
		"--log-file", RestoreLog, "-v4",
		"--root", o.Root, "--pidfile", "restore.pid",
		"--tcp-established", "--file-locks", "--ext-unix-sk",
		// The restore runs in the container's new cgroup already.
		"--manage-cgroups=ignore",
	}
	if o.ShellJob {
		args = append(args, "--shell-job")
	}
	for _, k := range sortedKeys(o.Mounts) {
		args = append(args, "--external", "mnt["+k+"]:"+o.Mounts[k])
	}
	for _, k := range sortedKeys(o.JoinNS) {
		args = append(args, "--join-ns", k+":"+o.JoinNS[k])
	}
	for _, k := range sortedKeys(o.InheritFDs) {
		args = append(args, "--inherit-fd", "fd["+strconv.Itoa(o.InheritFDs[k])+"]:"+k)
	}
	return args
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// ExtNSKey names an external namespace of kind in the images.
func ExtNSKey(kind string) string { return extNSKey(kind) }
