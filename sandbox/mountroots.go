package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// mountRoots lists the mount points at or below dir by asking statx of
// each entry whether it is a mount's root, instead of reading
// /proc/self/mountinfo: the kernel builds that file whole for every read
// (all of the node's mounts, thousands with many pods' volumes), which cost
// StopPodSandbox and RemovePodSandbox tens of milliseconds each on a loaded
// node, for the pod's few entries. It does not descend into a mount point:
// an MNT_DETACH unmount takes what is mounted inside it along. Where statx
// cannot tell a mount root it reads mountinfo.
func mountRoots(dir string) ([]string, error) {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_TYPE, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil || st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return mountsUnder(dir)
	}
	var out []string
	if err := walkMountRoots(dir, &st, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func walkMountRoots(path string, st *unix.Statx_t, out *[]string) error {
	if st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		*out = append(*out, path)
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	entries, err := os.ReadDir(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // removed meanwhile
	}
	if err != nil {
		return fmt.Errorf("list mounts below %s: %w", path, err)
	}
	for _, e := range entries {
		p := filepath.Join(path, e.Name())
		var est unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_TYPE, &est)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list mounts below %s: %w", path, err)
		}
		if err := walkMountRoots(p, &est, out); err != nil {
			return err
		}
	}
	return nil
}
