// Package userns makes pods' user namespaces and id-mapped mounts.
//
// A user namespace can only be created or joined by a one-thread process,
// so a Go program cannot make one on a thread of its own: Hold starts the
// shim's "hold" role in the new namespaces (with their id maps written by
// Go's exec before it runs), for the caller to pin and kill. An id-mapped
// mount (IDMapped) shows a tree's files through such a namespace's maps:
// the node's uid 0 as the pod's root, which is how a pod's root owns its
// image's files and volumes without a chown.
package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
)

// IDMap maps Size ids from ContainerID on, in the namespace, to HostID on,
// on the node.
type IDMap struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Size        uint32 `json:"size"`
}

// Mapping is a pod's user and group id maps.
type Mapping struct {
	UIDs []IDMap `json:"uids"`
	GIDs []IDMap `json:"gids"`
}

// Validate accepts what containerd and CRI-O accept from the kubelet: one
// map each for users and groups, starting at the namespace's root, within
// the 32-bit id space.
func (m Mapping) Validate() error {
	for _, l := range []struct {
		what string
		maps []IDMap
	}{{"uid", m.UIDs}, {"gid", m.GIDs}} {
		if len(l.maps) != 1 {
			return fmt.Errorf("%w: user namespace needs exactly one %s mapping, got %d", errdefs.ErrInvalidArgument, l.what, len(l.maps))
		}
		im := l.maps[0]
		if im.ContainerID != 0 {
			return fmt.Errorf("%w: user namespace %s mapping must map id 0 (starts at %d)", errdefs.ErrInvalidArgument, l.what, im.ContainerID)
		}
		if im.Size == 0 {
			return fmt.Errorf("%w: user namespace %s mapping is empty", errdefs.ErrInvalidArgument, l.what)
		}
		// 4294967295 is the invalid id, never mapped.
		if uint64(im.HostID)+uint64(im.Size) > 1<<32-1 {
			return fmt.Errorf("%w: user namespace %s mapping %d+%d overflows the id space", errdefs.ErrInvalidArgument, l.what, im.HostID, im.Size)
		}
	}
	return nil
}

// Equal reports whether two mappings are the same.
func (m Mapping) Equal(o Mapping) bool {
	eq := func(a, b []IDMap) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	return eq(m.UIDs, o.UIDs) && eq(m.GIDs, o.GIDs)
}

// RootUID and RootGID are the node's ids of the namespace's root.
func (m Mapping) RootUID() uint32 { return m.UIDs[0].HostID }
func (m Mapping) RootGID() uint32 { return m.GIDs[0].HostID }

func sysMaps(maps []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(maps))
	for i, im := range maps {
		out[i] = syscall.SysProcIDMap{ContainerID: int(im.ContainerID), HostID: int(im.HostID), Size: int(im.Size)}
	}
	return out
}

// Holder is a process that sits in new namespaces until Release.
type Holder struct {
	cmd *exec.Cmd
}

// Hold starts binary's "hold" role (berth-shim) in a new user namespace
// with m's maps and, owned by it, the new namespaces of flags
// (CLONE_NEWNET ...). The namespaces are /proc/<Pid>/ns/*.
func Hold(binary string, m Mapping, flags uintptr) (*Holder, error) {
	cmd := exec.Command(binary, "hold")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | flags,
		UidMappings: sysMaps(m.UIDs),
		GidMappings: sysMaps(m.GIDs),
		// setgroups stays allowed: the pod's root sets its processes' groups.
		GidMappingsEnableSetgroups: true,
		// Gone with berthd if it dies before the namespaces are pinned.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a process in a new user namespace: %w", err)
	}
	return &Holder{cmd: cmd}, nil
}

// Pid is the holding process.
func (h *Holder) Pid() int { return h.cmd.Process.Pid }

// NSPath is the file of one of its namespaces ("user", "net" ...).
func (h *Holder) NSPath(kind string) string {
	return fmt.Sprintf("/proc/%d/ns/%s", h.cmd.Process.Pid, kind)
}

// Release ends the holding process; pinned namespaces outlive it.
func (h *Holder) Release() {
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

// IDMapped returns a detached copy of the mount tree at src (recursive: its
// submounts too) whose files show through the maps of the user namespace
// open as usernsFD, read-only if asked. The caller attaches it
// (unix.MoveMount) and closes it. A file system without id-mapped mount
// support fails with ErrUnsupported.
func IDMapped(src string, usernsFD int, recursive, readonly bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	setFlags := uint(0)
	if recursive {
		flags |= unix.AT_RECURSIVE
		setFlags = unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		return nil, fmt.Errorf("clone mount of %s: %w", src, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(usernsFD)}
	if readonly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", uint(unix.AT_EMPTY_PATH)|setFlags, &attr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("id-mapped mount of %s: %w (%w)", src, errors.ErrUnsupported, err)
		}
		return nil, fmt.Errorf("id-mapped mount of %s: %w", src, err)
	}
	return os.NewFile(uintptr(fd), "idmapped:"+src), nil
}

// probeMapping is any valid mapping: only the mount's support is probed.
var probeMapping = Mapping{UIDs: []IDMap{{0, 65536, 65536}}, GIDs: []IDMap{{0, 65536, 65536}}}

// Supported tells whether pods can have user namespaces here: a user
// namespace can be made with binary's hold role, and dir's file system
// takes id-mapped mounts (where image layers and containers' files live).
func Supported(binary, dir string) error {
	h, err := Hold(binary, probeMapping, 0)
	if err != nil {
		return err
	}
	defer h.Release()
	f, err := os.Open(h.NSPath("user"))
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := IDMapped(dir, int(f.Fd()), false, true)
	if err != nil {
		return err
	}
	return m.Close()
}

// Searchable checks that every directory from / to dir lets others search
// it, as a user namespace's root is "others" to the node's files. Dirs not
// made yet are berth's to make (0711).
func Searchable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if os.IsNotExist(err) && d != "/" {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by others (mode %v): a pod's user namespace could not reach its containers' files", d, st.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}
