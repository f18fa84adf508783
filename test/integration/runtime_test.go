package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/rootfs"
	"github.com/berth-dev/berth/test/framework"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// busyboxLayers writes a busybox image as three layer dirs under dir,
// lowest first: the binary and its libraries, the applet links and /etc,
// and a top layer that overrides a file of the middle one.
func busyboxLayers(t testing.TB, dir string) []string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox is not installed (hack/install-deps.sh installs it): %v", err)
	}
	l1, l2, l3 := filepath.Join(dir, "l1"), filepath.Join(dir, "l2"), filepath.Join(dir, "l3")
	out, err := exec.Command("ldd", bb).Output()
	if err != nil {
		t.Fatalf("ldd busybox: %v", err)
	}
	files := append([]string{bb}, regexp.MustCompile(`(/\S+)`).FindAllString(string(out), -1)...)
	for _, f := range files {
		copyFile(t, f, filepath.Join(l1, f))
	}
	if bb != "/bin/busybox" {
		copyFile(t, bb, filepath.Join(l1, "bin/busybox"))
	}
	mkdirs(t, filepath.Join(l2, "bin"), filepath.Join(l2, "etc"), filepath.Join(l2, "tmp"), filepath.Join(l2, "proc"), filepath.Join(l2, "sys"), filepath.Join(l2, "dev"), filepath.Join(l2, "root"))
	for _, applet := range []string{"sh", "cat", "ls", "echo", "id", "hostname", "grep", "sleep", "stat", "touch", "mount", "head", "readlink", "pwd", "env", "dd", "true", "false", "ip", "test", "awk", "tr", "cut", "wc"} {
		if err := os.Symlink("busybox", filepath.Join(l2, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(l2, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
	writeFile(t, filepath.Join(l2, "etc/group"), "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n")
	writeFile(t, filepath.Join(l2, "etc/layer"), "middle\n")
	writeFile(t, filepath.Join(l3, "etc/layer"), "top\n")
	return []string{l1, l2, l3}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	mkdirs(t, filepath.Dir(dst))
	if err := os.WriteFile(dst, data, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	mkdirs(t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// runtimeEnv is a shared image plus a cgroup parent for one test.
type runtimeEnv struct {
	dir      string
	layers   []string
	initPath string
	cgParent string
}

func newRuntimeEnv(t *testing.T) *runtimeEnv {
	requireRoot(t)
	dir := t.TempDir()
	e := &runtimeEnv{
		dir:      dir,
		layers:   busyboxLayers(t, filepath.Join(dir, "image")),
		initPath: filepath.Join(framework.BinDir(t), "berth-shim"),
		cgParent: "/berth-test-" + filepath.Base(dir),
	}
	t.Cleanup(func() {
		if cg, err := cgroups.Load(e.cgParent); err == nil {
			if err := cg.Delete(); err != nil {
				t.Errorf("remove test cgroup parent: %v", err)
			}
		}
	})
	return e
}

// bundle mounts a fresh rootfs for a container named name and returns the
// bundle dir; the mount and dirs go away when the test ends.
func (e *runtimeEnv) bundle(t *testing.T, name string) string {
	b := filepath.Join(e.dir, name)
	target := filepath.Join(b, "rootfs")
	mkdirs(t, target)
	l := rootfs.Layers{Lower: e.layers, Upper: filepath.Join(b, "upper"), Work: filepath.Join(b, "work")}
	if err := rootfs.Mount(target, l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rootfs.Remove(target, l); err != nil {
			t.Errorf("remove rootfs: %v", err)
		}
	})
	return b
}

// baseSpec is what berthd's spec generation gives a plain container.
func (e *runtimeEnv) baseSpec(name string, args ...string) *specs.Spec {
	defaultCaps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "ctr-" + name,
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: e.cgParent + "/" + name,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

func writeSpec(t testing.TB, bundle string, s *specs.Spec) {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ran is one container's output and end.
type ran struct {
	stdout, stderr string
	status         process.ExitStatus
	oom            bool
}

// create writes the spec and creates the container with pipes for output;
// the returned function starts nothing, it collects output after Wait.
func (e *runtimeEnv) create(t *testing.T, bundle string, s *specs.Spec) (*process.Container, func() (string, string)) {
	t.Helper()
	writeSpec(t, bundle, s)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c, err := process.Create(process.CreateOpts{InitPath: e.initPath, BundleDir: bundle, Spec: s, Stdout: outW, Stderr: errW})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		t.Fatal(err)
	}
	var outBuf, errBuf bytes.Buffer
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(&outBuf, outR); outR.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(&errBuf, errR); errR.Close(); done <- struct{}{} }()
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	return c, func() (string, string) {
		<-done
		<-done
		return outBuf.String(), errBuf.String()
	}
}

// run creates, starts and waits for a container.
func (e *runtimeEnv) run(t *testing.T, name string, s *specs.Spec) ran {
	t.Helper()
	b := e.bundle(t, name)
	c, output := e.create(t, b, s)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	r := ran{status: st, oom: c.OOMKilled()}
	r.stdout, r.stderr = output()
	return r
}

func TestRuntimeHello(t *testing.T) {
	e := newRuntimeEnv(t)
	r := e.run(t, "hello", e.baseSpec("hello", "sh", "-c", "echo hello; cat /etc/layer; echo pid=$$"))
	if r.status.Code != 0 || r.stdout != "hello\ntop\npid=1\n" {
		t.Fatalf("status %+v stdout %q stderr %q", r.status, r.stdout, r.stderr)
	}
}

var _ = fmt.Sprint
var _ = sort.Strings
var _ = strings.Contains
var _ = time.Now
var _ = runtime.GOOS
var _ = unix.Getpid
