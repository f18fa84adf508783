package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/safefile"
)

// ShmSize is the size of a pod's /dev/shm.
const ShmSize = 64 << 20

// writeFileAtomic writes data to path through a temp file and rename, so a
// reader (or a crash) never sees half a file. Neither the temp file nor
// path is followed if a symlink is there (safefile).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	d, err := safefile.OpenDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.WriteFileAtomic(filepath.Base(path), data, mode)
}

func hostsFile(hostname string, ips []string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	return b.Bytes()
}

func resolvConf(dns *DNSConfig) ([]byte, error) {
	if dns == nil || len(dns.Servers)+len(dns.Searches)+len(dns.Options) == 0 {
		b, err := os.ReadFile("/etc/resolv.conf")
		if os.IsNotExist(err) {
			return nil, nil
		}
		return b, err
	}
	var b bytes.Buffer
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return b.Bytes(), nil
}

// writePodFiles writes hostname, hosts and resolv.conf into the pod dir.
func writePodFiles(dir, hostname string, ips []string, dns *DNSConfig) error {
	resolv, err := resolvConf(dns)
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	for name, data := range map[string][]byte{
		"hostname":    []byte(hostname + "\n"),
		"hosts":       hostsFile(hostname, ips),
		"resolv.conf": resolv,
	} {
		if err := writeFileAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// mountShm mounts the pod's /dev/shm, a size-limited tmpfs, on the dir
// path (made if missing), opened without following a symlink.
func mountShm(path string) error {
	d, err := safefile.OpenDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	name := filepath.Base(path)
	if err := d.MkdirAll(name, 0o755); err != nil {
		return err
	}
	dir, err := d.OpenFile(name, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	opts := fmt.Sprintf("mode=1777,size=%d", ShmSize)
	target := fmt.Sprintf("/proc/self/fd/%d", dir.Fd())
	if err := unix.Mount("shm", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", path, err)
	}
	return nil
}
