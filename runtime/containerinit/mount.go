package containerinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountOpts is a spec mount's options sorted into what mount(2) and
// mount_setattr(2) take.
type mountOpts struct {
	flags       uintptr // for the mount itself
	clear       uintptr // flags named off ("rw", "suid", ...)
	propagation []uintptr
	data        []string
	bind        bool
	recursiveRO bool
}

var flagOpts = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"dirsync": {false, unix.MS_DIRSYNC}, "remount": {false, unix.MS_REMOUNT},
	"mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"atime": {true, unix.MS_NOATIME}, "noatime": {false, unix.MS_NOATIME},
	"diratime": {true, unix.MS_NODIRATIME}, "nodiratime": {false, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
}

var propagationOpts = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func parseMountOptions(options []string) mountOpts {
	var o mountOpts
	for _, opt := range options {
		switch {
		case opt == "bind":
			o.bind = true
			o.flags |= unix.MS_BIND
		case opt == "rbind":
			o.bind = true
			o.flags |= unix.MS_BIND | unix.MS_REC
		case opt == "rro":
			o.recursiveRO = true
		case propagationOpts[opt] != 0:
			o.propagation = append(o.propagation, propagationOpts[opt])
		default:
			if f, ok := flagOpts[opt]; ok {
				if f.clear {
					o.flags &^= f.flag
					o.clear |= f.flag
				} else {
					o.flags |= f.flag
				}
				continue
			}
			o.data = append(o.data, opt)
		}
	}
	return o
}

// Mounts target fdPath(handle): the /proc/self/fd link of a handle that
// was resolved inside the rootfs names that very inode, so a symlink
// swapped in meanwhile cannot redirect the mount.

// rootfsPropagation maps the spec's rootfsPropagation; rslave by default so
// that the container's mounts do not leak to the host while host mounts
// still reach it.
func rootfsPropagation(spec *specs.Spec) (uintptr, error) {
	p := spec.Linux.RootfsPropagation
	if p == "" {
		return unix.MS_SLAVE | unix.MS_REC, nil
	}
	f, ok := propagationOpts[p]
	if !ok {
		return 0, fmt.Errorf("bad rootfsPropagation %q", p)
	}
	return f, nil
}

// setupRootfs mounts the spec's filesystems in the rootfs, runs the
// createContainer hooks and pivots into it.
func setupRootfs(spec *specs.Spec, rootfs string, hooks *hookRunner) error {
	prop, err := rootfsPropagation(spec)
	if err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("make / %s: %w", spec.Linux.RootfsPropagation, err)
	}
	if prop&unix.MS_SHARED != 0 {
		// pivot_root refuses a shared new root or one on a shared parent,
		// and the bind below would propagate to the host's mount table.
		if err := makeParentPrivate(rootfs); err != nil {
			return err
		}
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", rootfs, err)
	}
	root, err := openRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.close()

	sources, err := mountFDs()
	if err != nil {
		return err
	}
	devMounted := false
	for i, m := range spec.Mounts {
		fd, ok := sources[i]
		if !ok {
			fd = -1
		}
		if err := mountEntry(root, m, spec, fd); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Source, m.Destination, err)
		}
		if filepath.Clean(m.Destination) == "/dev" && m.Type != "bind" && !parseMountOptions(m.Options).bind {
			devMounted = true
		}
	}
	if devMounted {
		if err := createDevices(root, spec.Linux.Devices); err != nil {
			return err
		}
	}
	if cwd := spec.Process.Cwd; cwd != "" {
		d, err := root.mkdirAll(cwd, 0o755)
		if err != nil {
			return fmt.Errorf("create cwd %s: %w", cwd, err)
		}
		unix.Close(d)
	}
	if hooks != nil && hooks.nodeFirst != nil {
		if err := hooks.nodeFirst(); err != nil {
			return err
		}
	}
	if hooks != nil {
		if err := hooks.run("createContainer", spec.Hooks.CreateContainer, specs.StateCreating); err != nil {
			return err
		}
	}
	return pivotRoot(rootfs)
}

// protectRootfs masks paths and makes paths and the rootfs read-only:
// the last of the filesystem setup, after the sysctls were written.
func protectRootfs(spec *specs.Spec) error {
	for _, p := range spec.Linux.MaskedPaths {
		if err := maskPath(p); err != nil {
			return err
		}
	}
	for _, p := range spec.Linux.ReadonlyPaths {
		if err := readonlyPath(p); err != nil {
			return err
		}
	}
	if spec.Root.Readonly {
		if err := remountReadonly("/"); err != nil {
			return fmt.Errorf("read-only rootfs: %w", err)
		}
	}
	return nil
}

// makeParentPrivate makes the mount that holds dir (dir's own, when it is
// a mount point) private: the bind of dir onto itself then is private too.
func makeParentPrivate(dir string) error {
	ms, err := mountinfo.GetMounts(mountinfo.ParentsFilter(dir))
	if err != nil {
		return fmt.Errorf("mounts of %s: %w", dir, err)
	}
	var best *mountinfo.Info
	for _, m := range ms {
		if best == nil || len(m.Mountpoint) > len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil || !strings.Contains(best.Optional, "shared:") {
		return nil
	}
	if err := unix.Mount("", best.Mountpoint, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", best.Mountpoint, err)
	}
	return nil
}

// openDest resolves a mount destination inside the rootfs, creating it (a
// file when the source is not a directory) if missing.
func openDest(root *root, dest string, fileDest bool) (int, error) {
	if fileDest {
		return root.createFile(dest)
	}
	return root.mkdirAll(dest, 0o755)
}

// mountEntry mounts m in the rootfs; a bind mount with sourceFD >= 0
// attaches that copy of its source (MountSources) instead.
func mountEntry(root *root, m specs.Mount, spec *specs.Spec, sourceFD int) error {
	if !filepath.IsAbs(m.Destination) {
		return fmt.Errorf("destination is not absolute")
	}
	o := parseMountOptions(m.Options)
	if m.Type == "bind" {
		o.bind = true
		o.flags |= unix.MS_BIND
	}
	if m.Type == "cgroup" {
		return mountCgroup(root, m, spec)
	}
	fileDest := false
	if o.bind {
		var st unix.Stat_t
		var err error
		if sourceFD >= 0 {
			err = unix.Fstat(sourceFD, &st)
		} else {
			err = unix.Stat(m.Source, &st)
		}
		if err != nil {
			return err
		}
		fileDest = st.Mode&unix.S_IFMT != unix.S_IFDIR
	}
	dest, err := openDest(root, m.Destination, fileDest)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	switch {
	case o.bind && sourceFD >= 0:
		err = unix.MoveMount(sourceFD, "", dest, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
		unix.Close(sourceFD)
	case o.bind:
		err = unix.Mount(m.Source, fdPath(dest), "", o.flags&(unix.MS_BIND|unix.MS_REC), "")
	default:
		err = unix.Mount(m.Source, fdPath(dest), m.Type, o.flags, strings.Join(o.data, ","))
	}
	unix.Close(dest)
	if err != nil {
		return err
	}
	bindFlags := o.flags &^ (unix.MS_BIND | unix.MS_REC)
	if !(o.bind && bindFlags != 0) && !o.recursiveRO && len(o.propagation) == 0 {
		return nil
	}
	// From here on the destination is the new mount: reopen it.
	mnt, err := root.open(m.Destination)
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	defer unix.Close(mnt)
	if o.bind && bindFlags != 0 {
		// A bind mount takes its flags only through a remount; keep the
		// flags the source's mount has (nosuid, nodev ...) that the
		// options do not clear.
		var st unix.Statfs_t
		if err := unix.Fstatfs(mnt, &st); err != nil {
			return err
		}
		flags := (mountFlagsOf(st.Flags) &^ o.clear) | bindFlags
		if err := unix.Mount("", fdPath(mnt), "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
			return fmt.Errorf("remount: %w", err)
		}
	}
	if o.recursiveRO {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(mnt, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("recursive read-only: %w", err)
		}
	}
	for _, p := range o.propagation {
		if err := unix.Mount("", fdPath(mnt), "", p, ""); err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
	}
	return nil
}

// mountFlagsOf turns statfs flags into the mount flags of the same meaning
// (the kernel uses equal values for these).
func mountFlagsOf(f int64) uintptr {
	const keep = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
		unix.MS_SYNCHRONOUS | unix.MS_MANDLOCK | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME
	return uintptr(f) & keep
}

// mountCgroup gives the container a read-only view of its own cgroup: on
// v2 a cgroup2 mount (in a new cgroup namespace) or a bind of its cgroup
// dir; on v1 a tmpfs with each hierarchy's container dir bound in.
func mountCgroup(root *root, m specs.Mount, spec *specs.Spec) error {
	dest, err := openDest(root, m.Destination, false)
	if err != nil {
		return err
	}
	defer unix.Close(dest)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return err
	}
	const ro = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	cgPath := spec.Linux.CgroupsPath
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		if newNamespace(spec, specs.CgroupNamespace) {
			return unix.Mount("cgroup2", fdPath(dest), "cgroup2", ro, "")
		}
		if err := unix.Mount(filepath.Join("/sys/fs/cgroup", cgPath), fdPath(dest), "", unix.MS_BIND, ""); err != nil {
			return err
		}
		return remountInRoot(root, m.Destination, unix.MS_BIND|unix.MS_REMOUNT|ro)
	}
	if err := unix.Mount("tmpfs", fdPath(dest), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return err
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 {
			// Co-mounted controllers ("cpu" → "cpu,cpuacct").
			if err := copySymlink(root, filepath.Join("/sys/fs/cgroup", e.Name()), filepath.Join(m.Destination, e.Name())); err != nil {
				return err
			}
			continue
		}
		if !e.IsDir() || e.Name() == "unified" {
			continue
		}
		src := filepath.Join("/sys/fs/cgroup", e.Name(), cgPath)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		sub, err := openDest(root, filepath.Join(m.Destination, e.Name()), false)
		if err != nil {
			return err
		}
		err = unix.Mount(src, fdPath(sub), "", unix.MS_BIND, "")
		unix.Close(sub)
		if err == nil {
			err = remountInRoot(root, filepath.Join(m.Destination, e.Name()), unix.MS_BIND|unix.MS_REMOUNT|ro)
		}
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", e.Name(), err)
		}
	}
	return remountInRoot(root, m.Destination, unix.MS_REMOUNT|ro)
}

// copySymlink makes at dest (in the rootfs) a symlink like the host's src.
func copySymlink(root *root, src, dest string) error {
	target, err := os.Readlink(src)
	if err != nil {
		return err
	}
	dir, err := root.open(filepath.Dir(dest))
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	dirfd, err := dirFd(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := unix.Symlinkat(target, dirfd, filepath.Base(dest)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("symlink %s: %w", dest, err)
	}
	return nil
}

// remountInRoot changes the flags of the mount at dest, opened afresh so
// that the handle names the mount, not the directory under it.
func remountInRoot(root *root, dest string, flags uintptr) error {
	mnt, err := root.open(dest)
	if err != nil {
		return err
	}
	defer unix.Close(mnt)
	return unix.Mount("", fdPath(mnt), "", flags, "")
}

// pivotRoot makes rootfs the root and detaches the old one, without a
// directory for the old root inside the new one (pivot_root(".", ".")).
func pivotRoot(rootfs string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer unix.Close(oldRoot)
	newRoot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(newRoot)
	if err := unix.Fchdir(newRoot); err != nil {
		return fmt.Errorf("chdir rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("chdir old root: %w", err)
	}
	// The old root must not propagate its unmount back to the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root rslave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// maskPath hides a path: /dev/null over a file, an empty read-only tmpfs
// over a directory. Missing paths need no mask.
func maskPath(p string) error {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("mask %s: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		err = unix.Mount("tmpfs", fdPath(fd), "tmpfs", unix.MS_RDONLY, "size=0,mode=0755")
	case unix.S_IFLNK:
	default:
		err = unix.Mount("/dev/null", fdPath(fd), "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

func readonlyPath(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	if err := remountReadonly(p); err != nil {
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	return nil
}

func remountReadonly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|mountFlagsOf(st.Flags), "")
}
