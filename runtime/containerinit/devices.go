package containerinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func fileMode(m os.FileMode) *os.FileMode { return &m }

// defaultDevices are in every container's /dev, as with runc.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: fileMode(0o666)},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: fileMode(0o666)},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: fileMode(0o666)},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: fileMode(0o666)},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: fileMode(0o666)},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: fileMode(0o666)},
}

var devLinks = [][2]string{
	{"/proc/self/fd", "fd"},
	{"/proc/self/fd/0", "stdin"},
	{"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"},
	{"pts/ptmx", "ptmx"},
}

func createDevices(root *root, extra []specs.LinuxDevice) error {
	seen := map[string]bool{}
	for _, d := range extra {
		seen[filepath.Clean(d.Path)] = true
	}
	devs := append([]specs.LinuxDevice{}, extra...)
	for _, d := range defaultDevices {
		if !seen[d.Path] {
			devs = append(devs, d)
		}
	}
	dirs := map[string]int{} // parent dir → directory fd
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()
	for _, d := range devs {
		if err := createDevice(root, dirs, d); err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
	}
	dev, err := root.open("/dev")
	if err != nil {
		return err
	}
	dirfd, err := dirFd(dev)
	unix.Close(dev)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if _, err := os.Stat("/proc/kcore"); err == nil {
		if err := unix.Symlinkat("/proc/kcore", dirfd, "core"); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/core: %w", err)
		}
	}
	for _, l := range devLinks {
		if err := unix.Symlinkat(l[0], dirfd, l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

func createDevice(root *root, dirs map[string]int, d specs.LinuxDevice) error {
	var kind uint32
	switch d.Type {
	case "c", "u":
		kind = unix.S_IFCHR
	case "b":
		kind = unix.S_IFBLK
	case "p":
		kind = unix.S_IFIFO
	default:
		return fmt.Errorf("unknown device type %q", d.Type)
	}
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(d.FileMode.Perm())
	}
	parent := filepath.Dir(filepath.Clean(d.Path))
	dirfd, ok := dirs[parent]
	if !ok {
		dir, err := root.mkdirAll(parent, 0o755)
		if err != nil {
			return err
		}
		dirfd, err = dirFd(dir)
		unix.Close(dir)
		if err != nil {
			return err
		}
		dirs[parent] = dirfd
	}
	name := filepath.Base(d.Path)
	err := unix.Mknodat(dirfd, name, kind|mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if errors.Is(err, unix.EPERM) && kind != unix.S_IFIFO {
		// In a user namespace no device can be made: bind the node's.
		return bindDevice(dirfd, name, d, kind)
	}
	if err != nil {
		return err
	}
	// mknod is subject to the umask.
	if err := unix.Fchmodat(dirfd, name, mode, 0); err != nil {
		return err
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	return unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// bindDevice binds the node's device file at d.Path (still visible: the
// init has not pivoted yet) onto an empty file, if it is the same device.
// The node's file is opened once and that handle is both checked and
// bound: a path swapped for another file between the two (a symlink to a
// host secret) cannot be what gets bound.
func bindDevice(dirfd int, name string, d specs.LinuxDevice, kind uint32) error {
	src, err := unix.Open(d.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("device %s cannot be made in a user namespace, nor bound: %w", d.Path, err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	if st.Mode&unix.S_IFMT != kind || st.Rdev != unix.Mkdev(uint32(d.Major), uint32(d.Minor)) {
		return fmt.Errorf("device %s cannot be made in a user namespace, and the node's is another device", d.Path)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Mount(fdPath(src), fdPath(fd), "", unix.MS_BIND, "")
}
