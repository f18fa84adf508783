// Package framework starts real berthd daemons for end-to-end tests and
// gives them CRI clients and crictl.
package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// RepoRoot is the project checkout the tests run from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir holds berthd and berth-shim: $BERTH_BIN_DIR when set (make test
// builds them once), else a fresh build in the checkout's _output/testbin
// (ignored by git, and not a temp dir that each run would leave behind).
func BinDir(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if d := os.Getenv("BERTH_BIN_DIR"); d != "" {
			binDir = d
			return
		}
		binDir = filepath.Join(RepoRoot(), "_output", "testbin")
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Daemon is a berthd running on its own socket, root and state dirs.
type Daemon struct {
	Dir      string // parent of root, state and the socket
	Root     string
	State    string
	Socket   string
	Endpoint string // unix:// URL of Socket

	log *TestLog

	cmd  *exec.Cmd
	conn *grpc.ClientConn
	done chan error

	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient
}

// NewDirs makes a short temp dir for a daemon (unix socket paths are limited
// to 108 bytes) and removes it when the test ends.
func NewDirs(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "berth-t-")
	if err != nil {
		t.Fatal(err)
	}
	// Searchable, as /run and /var/lib are: the root of a pod's user
	// namespace must reach its container's rootfs below the state dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Args are the flags that give a daemon in dir its own socket and dirs.
func Args(dir string) []string {
	return []string{
		"--listen", "unix://" + filepath.Join(dir, "berth.sock"),
		"--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"),
		"--config", filepath.Join(dir, "config.toml"),
		"--registry-config-dir", filepath.Join(dir, "certs.d"),
		"--cni-conf-dir", filepath.Join(dir, "net.d"),
	}
}

// StartDaemon starts berthd with Args(dir) plus extra flags and waits until
// it answers Version; it is stopped when the test ends.
func StartDaemon(t testing.TB, dir string, extra ...string) *Daemon {
	t.Helper()
	if dir == "" {
		dir = NewDirs(t)
	}
	cfg := filepath.Join(dir, "config.toml")
	if _, err := os.Stat(cfg); os.IsNotExist(err) {
		if err := os.WriteFile(cfg, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := &Daemon{
		Dir:    dir,
		Root:   filepath.Join(dir, "root"),
		State:  filepath.Join(dir, "state"),
		Socket: filepath.Join(dir, "berth.sock"),
		log:    NewTestLog(t, "berthd"),
		done:   make(chan error, 1),
	}
	d.Endpoint = "unix://" + d.Socket
	args := append(Args(dir), extra...)
	d.cmd = exec.Command(filepath.Join(BinDir(t), "berthd"), args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start berthd: %v", err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.Stop(t) })

	conn, err := grpc.NewClient(d.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.conn = conn
	d.Runtime = runtimeapi.NewRuntimeServiceClient(conn)
	d.Images = runtimeapi.NewImageServiceClient(conn)

	// An emulated VM on a busy machine starts berthd many times slower.
	wait := 20 * time.Second
	if os.Getenv("BERTH_VM_VARIANT") != "" {
		wait = 90 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return d
		}
		select {
		case werr := <-d.done:
			d.done <- werr
			t.Fatalf("berthd exited early (%v); its log follows", werr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("berthd did not answer Version within %s: %v; its log follows", wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for berthd to exit; it is idempotent.
func (d *Daemon) Stop(t testing.TB) error {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		err = <-d.done
		t.Errorf("berthd did not stop within 20s of SIGTERM; its log follows")
	}
	d.cmd = nil
	return err
}

// Kill stops berthd with SIGKILL, as a crash would.
func (d *Daemon) Kill() {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Kill()
		<-d.done
		d.cmd = nil
	}
}

// Crictl runs crictl against the daemon and returns its combined output.
func (d *Daemon) Crictl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return Crictl(d.Endpoint, args...)
}

// Crictl runs crictl against endpoint.
func Crictl(endpoint string, args ...string) (string, error) {
	full := append([]string{"--runtime-endpoint", endpoint, "--image-endpoint", endpoint, "--timeout", "60s"}, args...)
	cmd := exec.Command("crictl", full...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Context is a context for a test's CRI calls, ended with the test. Its
// deadline bounds a hang, generously: many tests share one across all
// their steps, and a loaded machine makes each step many times slower.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Logs is all berthd has written so far. A failed test prints its tail
// anyway (NewTestLog): a failure message need not carry it.
func (d *Daemon) Logs() string { return d.log.String() }
