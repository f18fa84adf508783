// Package sysctl writes kernel parameters under /proc/sys for a pod or a
// container. The name comes from a request: it must name one existing file
// of the procfs mounted at /proc, never a path out of /proc/sys, through a
// symlink, or across a mount a container put over part of /proc/sys, and
// nothing is ever created.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrBadName is wrapped by the refusal of a name that is no sysctl.
var ErrBadName = errors.New("not a sysctl name")

// Path is the path below /proc/sys of a sysctl name, given with dots
// ("net.ipv4.ip_forward") or slashes ("net/ipv4/conf/eth0.1/forwarding",
// for a segment with a dot). Each segment must be a plain name: no "." or
// "..", no empty one, no NUL.
func Path(name string) (string, error) {
	var segs []string
	if strings.Contains(name, "/") {
		segs = strings.Split(name, "/")
	} else {
		segs = strings.Split(name, ".")
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsRune(s, 0) {
			return "", fmt.Errorf("sysctl %q: %w", name, ErrBadName)
		}
	}
	return strings.Join(segs, "/"), nil
}

// Write sets the sysctl name to value in the namespaces of the calling
// thread, through the procfs at procSys (normally /proc/sys).
func Write(procSys, name, value string) error {
	p, err := Path(name)
	if err != nil {
		return err
	}
	dir, err := unix.Open(procSys, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sysctl %s: open %s: %w", name, procSys, err)
	}
	defer unix.Close(dir)
	var st unix.Statfs_t
	if err := unix.Fstatfs(dir, &st); err != nil {
		return fmt.Errorf("sysctl %s: statfs %s: %w", name, procSys, err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("sysctl %s: %s is not a procfs", name, procSys)
	}
	// No O_CREAT, no O_TRUNC: a sysctl file exists and takes a write.
	how := unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	var fd int
	for range 16 {
		if fd, err = unix.Openat2(dir, p, &how); !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("sysctl %s: %s/%s is a symlink or crosses a mount: %w", name, procSys, p, ErrBadName)
		}
		return fmt.Errorf("sysctl %s: %w", name, &os.PathError{Op: "open", Path: procSys + "/" + p, Err: err})
	}
	f := os.NewFile(uintptr(fd), procSys+"/"+p)
	defer f.Close()
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return fmt.Errorf("sysctl %s: %w", name, err)
	}
	if fst.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("sysctl %s: %s is not a file: %w", name, f.Name(), ErrBadName)
	}
	if _, err := f.WriteString(value); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}
