package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/sysctl"
	"github.com/berth-dev/berth/runtime/userns"
)

// nsSpec is what createNamespaces makes.
type nsSpec struct {
	net, ipc, uts bool
	hostname      string
	sysctls       map[string]string
	// userns: a user namespace of the pod's own, owning the others, made
	// by holdBinary's hold role.
	userns     *userns.Mapping
	holdBinary string
}

func (s nsSpec) kinds() (flags uintptr, kinds []string) {
	for _, k := range []struct {
		want bool
		flag uintptr
		kind string
	}{{s.net, unix.CLONE_NEWNET, "net"}, {s.ipc, unix.CLONE_NEWIPC, "ipc"}, {s.uts, unix.CLONE_NEWUTS, "uts"}} {
		if k.want {
			flags |= k.flag
			kinds = append(kinds, k.kind)
		}
	}
	return flags, kinds
}

// createNamespaces makes the pod's new namespaces, sets the hostname and
// sysctls inside them, and pins them by bind mounts onto files of pinDir.
// It returns the pins; on error none remain.
//
// Without a user namespace they are made on a locked OS thread that is
// never unlocked (Go ends the thread with the goroutine, so no other code
// ever runs in them). A user namespace needs a one-thread process (see
// package userns): a hold process makes them all, owned by the user
// namespace (its root can then mount /sys and /proc and set the pod's
// sysctls), and is gone once they are pinned.
func createNamespaces(pinDir string, spec nsSpec) (pins map[string]string, err error) {
	flags, kinds := spec.kinds()
	if flags == 0 && spec.userns == nil {
		return nil, nil
	}
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return nil, fmt.Errorf("make pin dir: %w", err)
	}
	pins = map[string]string{}
	defer func() {
		if err != nil {
			unpin(pins)
		}
	}()
	if spec.userns != nil {
		h, err := userns.Hold(spec.holdBinary, *spec.userns, flags)
		if err != nil {
			return pins, err
		}
		defer h.Release()
		for _, k := range append([]string{"user"}, kinds...) {
			target := filepath.Join(pinDir, k)
			if err := pin(h.NSPath(k), target); err != nil {
				return pins, err
			}
			pins[k] = target
		}
	}
	err = onNewThread(func() error {
		if spec.userns != nil {
			return configure(spec, pins)
		}
		if err := unix.Unshare(int(flags)); err != nil {
			return fmt.Errorf("unshare namespaces: %w", err)
		}
		if err := configure(spec, nil); err != nil {
			return err
		}
		for _, k := range kinds {
			target := filepath.Join(pinDir, k)
			if err := pin("/proc/thread-self/ns/"+k, target); err != nil {
				return err
			}
			pins[k] = target
		}
		return nil
	})
	return pins, err
}

// onNewThread runs fn on a locked OS thread that ends with it, so the
// namespaces fn moves the thread into are never seen by other code.
func onNewThread(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ch <- fn()
		// No UnlockOSThread: the thread dies with the goroutine.
	}()
	return <-ch
}

// configure brings up lo, sets the hostname and the sysctls of the pod's
// new namespaces: those of the calling thread, or, with pins, the pinned
// ones, joined first.
func configure(spec nsSpec, pins map[string]string) error {
	for _, k := range []struct {
		kind string
		flag int
	}{{"net", unix.CLONE_NEWNET}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}} {
		p, ok := pins[k.kind]
		if !ok {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = unix.Setns(int(f.Fd()), k.flag)
		f.Close()
		if err != nil {
			return fmt.Errorf("join the pod's %s namespace: %w", k.kind, err)
		}
	}
	if spec.net {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bring up lo: %w", err)
		}
	}
	if spec.uts && spec.hostname != "" {
		if err := unix.Sethostname([]byte(spec.hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", spec.hostname, err)
		}
	}
	// /proc/sys shows the namespaces of the opening thread.
	for name, val := range spec.sysctls {
		if err := sysctl.Write("/proc/sys", name, val); err != nil {
			return err
		}
	}
	return nil
}

// pin bind-mounts a namespace file onto target (created empty).
func pin(nsFile, target string) error {
	f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("make pin %s: %w", target, err)
	}
	f.Close()
	if err := unix.Mount(nsFile, target, "", unix.MS_BIND, ""); err != nil {
		os.Remove(target)
		return fmt.Errorf("pin %s on %s: %w", nsFile, target, err)
	}
	return nil
}

// unpin unmounts and removes pins; missing ones are fine.
func unpin(pins map[string]string) error {
	var errs []error
	for _, p := range pins {
		if err := unmountRemove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmountRemove unmounts path (detaching, so a busy mount goes too) and
// removes it.
func unmountRemove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// isNamespacePin tells whether path is a live namespace bind mount.
func isNamespacePin(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// makePrivateMount makes dir a mount point of its own with private
// propagation, so pins made inside never show up in other mount namespaces
// (and are not held there).
func makePrivateMount(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if !mounted {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir (deepest last in
// mount order), from /proc/self/mountinfo.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

func isMountPoint(dir string) (bool, error) {
	mps, err := mountsUnder(dir)
	if err != nil {
		return false, err
	}
	for _, mp := range mps {
		if mp == dir {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for j := 1; j <= 3; j++ {
				c := s[i+j]
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopbackUp brings up lo of the calling thread's network namespace, so no
// loopback CNI plugin needs to run.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
