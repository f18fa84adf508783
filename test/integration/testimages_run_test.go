package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/test/framework"
)

// fixtureRootfs unpacks ref's image (whiteouts applied) from the registry into a
// temp dir, to run its programs under chroot without a container runtime.
func fixtureRootfs(t *testing.T, reg *framework.Registry, ref string) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(reg.Image(t, ref))
	defer rc.Close()
	cmd := exec.Command("tar", "-x", "--numeric-owner", "-C", dir)
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", ref, err, out)
	}
	// What a container runtime would provide; ash opens it for background jobs.
	if err := os.MkdirAll(filepath.Join(dir, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	return dir
}

func fixtureRun(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// The fixtures do what critest needs from them, checked under chroot (and
// unshare for the network servers, so no host port is taken).
func TestTestImagesRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chroot")
	}
	reg := framework.StartRegistry(t)

	t.Run("busybox", func(t *testing.T) {
		dir := fixtureRootfs(t, reg, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
		out, err := fixtureRun(t, "chroot", dir, "/bin/sh", "-c",
			"echo hello && id -u nobody && id -Gn berth1 && cat /var/cache/berth/new && "+
				"test ! -e /etc/berth/remove-me && test ! -e /var/cache/berth/old-1 && "+
				"{ sleep infinity & sleep 0.2; kill $! && echo ok; }")
		want := "hello\n65534\nberth1 berth2\nwritten by the top layer\nok\n"
		if err != nil || out != want {
			t.Errorf("busybox: %v\n%q, want %q", err, out, want)
		}
		// critest's MaskedPaths spec: the shell must exec ls, not run it
		// as a builtin, so a masked /bin/ls fails.
		out, _ = fixtureRun(t, "unshare", "-m", "sh", "-c",
			"mount --bind /dev/null "+filepath.Join(dir, "bin/ls")+" && chroot "+dir+" /bin/sh -c ls")
		if out != "/bin/sh: ls: Permission denied\n" {
			t.Errorf("masked /bin/ls: %q", out)
		}
	})

	// critest's execSync-with-timeout spec runs "sh -c 'pgrep sleep || true'"
	// and wants empty stdout and stderr once the timed-out sleep is gone; its
	// HostIpc specs run "ipcs -m" and look for the host's segment id.
	t.Run("pgrep and ipcs", func(t *testing.T) {
		dir := fixtureRootfs(t, reg, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
		if err := os.MkdirAll(filepath.Join(dir, "proc"), 0o555); err != nil {
			t.Fatal(err)
		}
		out, err := fixtureRun(t, "unshare", "-p", "-f", "--mount-proc="+filepath.Join(dir, "proc"),
			"chroot", dir, "/bin/sh", "-c",
			// The child execs sleep a moment after the fork; ash reports the
			// killed job on stderr, which is not what is checked here.
			`{ sleep 1000 & p=$!; for i in $(seq 50); do test "$(pgrep sleep)" = "$p" && echo found && break; usleep 100000; done; `+
				`kill $p; wait $p; } 2>/dev/null; `+
				`echo "[$(pgrep sleep || true)]"`)
		if err != nil || out != "found\n[]\n" {
			t.Errorf("pgrep: %v\n%q, want %q", err, out, "found\n[]\n")
		}

		// A segment made in a fresh IPC namespace, which goes away with it.
		out, err = fixtureRun(t, "unshare", "-i", "-p", "-f", "--mount-proc="+filepath.Join(dir, "proc"),
			"sh", "-c", "ipcmk -M 4096 && chroot "+dir+" /bin/ipcs -m")
		if err != nil {
			t.Fatalf("ipcmk, ipcs -m: %v\n%s", err, out)
		}
		first, rest, _ := strings.Cut(out, "\n")
		id := strings.TrimPrefix(first, "Shared memory id: ")
		if id == first || !strings.Contains(rest, "Shared Memory Segments") ||
			!regexp.MustCompile(`(?m)^0x[0-9a-f]+ +`+regexp.QuoteMeta(id)+` +root +644 +4096 `).MatchString(rest) {
			t.Errorf("ipcs -m does not list segment %q:\n%s", id, out)
		}
	})

	// serverCheck starts the image's command in new net, pid and mount
	// namespaces, waits until ready succeeds and runs check there.
	serverCheck := func(t *testing.T, dir, start, ready, check string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "proc"), 0o555); err != nil {
			t.Fatal(err)
		}
		script := "ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up; " + start + " & " +
			"for i in $(seq 50); do " + ready + " >/tmp/ready 2>&1 && break; sleep 0.1; done; " + check
		out, err := fixtureRun(t, "unshare", "-n", "-p", "-f", "--mount-proc="+filepath.Join(dir, "proc"),
			"chroot", dir, "/bin/sh", "-c", script)
		if err != nil {
			t.Errorf("%s: %v\n%s", start, err, out)
		}
		return out
	}

	t.Run("nginx", func(t *testing.T) {
		dir := fixtureRootfs(t, reg, "registry.k8s.io/e2e-test-images/nginx:1.14-2")
		out := serverCheck(t, dir, "nginx -g 'daemon off;'", "wget -q -O /tmp/page http://127.0.0.1:80/",
			`wget -q -O - http://127.0.0.1:80/ && p=$(cat /var/run/nginx.pid) && test "$(pidof nginx)" = "$p" && `+
				`tr '\0' ' ' </proc/$p/cmdline && kill -QUIT $p && sleep 0.3 && test ! -e /var/run/nginx.pid && echo stopped`)
		for _, want := range []string{"Welcome to nginx!", "nginx: master process", "stopped"} {
			if !strings.Contains(out, want) {
				t.Errorf("nginx output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("hostnet-nginx", func(t *testing.T) {
		dir := fixtureRootfs(t, reg, "gcr.io/k8s-staging-cri-tools/hostnet-nginx-"+runtime.GOARCH)
		out := serverCheck(t, dir, "nginx", "wget -q -O /tmp/page http://127.0.0.1:12003/", "cat /tmp/page")
		if !strings.Contains(out, "Welcome to nginx!") {
			t.Errorf("hostnet-nginx on 12003:\n%s", out)
		}
	})

	t.Run("httpd", func(t *testing.T) {
		dir := fixtureRootfs(t, reg, "registry.k8s.io/e2e-test-images/httpd:2.4.39-4")
		out := serverCheck(t, dir, "httpd-foreground", "wget -q -O /tmp/page http://127.0.0.1:80/", "cat /tmp/page")
		if !strings.Contains(out, "It works!") || !strings.Contains(out, "httpd") {
			t.Errorf("httpd:\n%s", out)
		}
	})

	t.Run("nonewprivs", func(t *testing.T) {
		dir := fixtureRootfs(t, reg, "registry.k8s.io/e2e-test-images/nonewprivs:1.3")
		out, err := fixtureRun(t, "chroot", "--userspec=1000:1000", dir, "/usr/local/bin/nnp")
		if err != nil || out != "Effective uid: 0\n" {
			t.Errorf("nnp without no_new_privs: %v %q", err, out)
		}
		out, err = fixtureRun(t, "setpriv", "--no-new-privs", "chroot", "--userspec=1000:1000", dir, "/usr/local/bin/nnp")
		if err != nil || out != "Effective uid: 1000\n" {
			t.Errorf("nnp with no_new_privs: %v %q", err, out)
		}
	})

	t.Run("pause", func(t *testing.T) {
		dir := fixtureRootfs(t, reg, "registry.k8s.io/pause:3.9")
		cmd := exec.Command("chroot", dir, "/pause")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		time.Sleep(200 * time.Millisecond)
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pause after SIGINT: %v", err)
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("pause did not exit on SIGINT")
		}
	})
}
