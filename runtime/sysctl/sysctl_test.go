package sysctl

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPath(t *testing.T) {
	for name, want := range map[string]string{
		"net.ipv4.ip_forward":               "net/ipv4/ip_forward",
		"net/ipv4/conf/eth0.1/forwarding":   "net/ipv4/conf/eth0.1/forwarding",
		"kernel.shm_rmid_forced":            "kernel/shm_rmid_forced",
		"net/../kernel/core_pattern":        "",
		"net.ipv4..ip_forward":              "",
		"../../etc/passwd":                  "",
		"/net/ipv4/ip_forward":              "",
		"net/ipv4/":                         "",
		"":                                  "",
		".":                                 "",
		"net/./ipv4/ip_forward":             "",
		"net.ipv4.ip_forward\x00":           "",
		"net/ipv4/conf/../../../etc/shadow": "",
	} {
		got, err := Path(name)
		if want == "" {
			if !errors.Is(err, ErrBadName) {
				t.Errorf("Path(%q) = %q, %v; want ErrBadName", name, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Path(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// onNetNS runs fn on a thread in a new network namespace (the thread ends
// with it), so that the sysctls it writes are not the node's.
func onNetNS(t *testing.T, fn func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- err
			return
		}
		ch <- fn()
	}()
	return <-ch
}

func TestWriteSetsTheValue(t *testing.T) {
	requireRoot(t)
	var got []byte
	err := onNetNS(t, func() error {
		if err := Write("/proc/sys", "net.ipv4.ip_unprivileged_port_start", "81"); err != nil {
			return err
		}
		var err error
		got, err = os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "81" {
		t.Fatalf("value %q, want 81", got)
	}
}

// A name must reach an existing file of procfs: a dir that is not procfs
// is refused, a missing sysctl is not created, and a mount over part of
// /proc/sys (a CRI mount at /proc/sys/... in a container) is not crossed.
func TestWriteRefuses(t *testing.T) {
	requireRoot(t)
	plain := t.TempDir()
	if err := os.MkdirAll(filepath.Join(plain, "net", "ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(plain, "net.ipv4.ip_forward", "1"); err == nil {
		t.Error("a dir that is no procfs was written to")
	}
	if _, err := os.Stat(filepath.Join(plain, "net", "ipv4", "ip_forward")); !os.IsNotExist(err) {
		t.Errorf("a file was made in a plain dir: %v", err)
	}

	if err := Write("/proc/sys", "net/../../../etc/berth-sysctl-test", "x"); !errors.Is(err, ErrBadName) {
		t.Errorf("traversal: %v, want ErrBadName", err)
	}
	if err := Write("/proc/sys", "kernel.berth_no_such_sysctl", "1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing sysctl: %v, want not exist", err)
	}

	// A procfs of the test's own with a host dir bound over a part of
	// its sys/.
	proc := t.TempDir()
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(proc, unix.MNT_DETACH) })
	host := t.TempDir()
	over := filepath.Join(proc, "sys", "kernel", "random")
	if err := unix.Mount(host, over, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(over, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(host, "victim"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kernel.random.victim", "kernel.random.made"} {
		if err := Write(filepath.Join(proc, "sys"), name, "pwned"); err == nil {
			t.Errorf("%s: written through the bind mount", name)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(host, "victim")); string(b) != "host\n" {
		t.Errorf("host file now %q", b)
	}
	if _, err := os.Stat(filepath.Join(host, "made")); !os.IsNotExist(err) {
		t.Errorf("a file was made through the bind mount: %v", err)
	}
}
