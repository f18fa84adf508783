package shim

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/errdefs"
)

// buildShim builds cmd/berth-shim for the test.
func buildShim(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := filepath.Join(t.TempDir(), "berth-shim")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/berth-shim")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build shim: %v\n%s", err, out)
	}
	return bin
}

func procStatus(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestLaunchPauseShutdown(t *testing.T) {
	bin := buildShim(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	placed := 0
	l, err := Launch(ctx, LaunchOptions{
		Binary: bin, PodID: "p1", StateDir: dir, LogPath: filepath.Join(dir, "shim.log"),
		Pause: &PauseOptions{},
		Place: func(pid int) error { placed = pid; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range []int{l.Pid, l.PausePid} {
			if p > 0 {
				_ = syscallKill(p)
			}
		}
	})
	if placed != l.Pid || l.PodID != "p1" || l.PausePid == 0 {
		t.Fatalf("launched %+v, placed %d", l, placed)
	}
	if sid := procStatus(t, l.Pid, "NSsid"); sid != itoa(l.Pid) {
		t.Errorf("shim session = %q, want its own (%d)", sid, l.Pid)
	}
	// The pause process is PID 1 of its own PID namespace, without privileges.
	if ns := procStatus(t, l.PausePid, "NSpid"); !strings.HasSuffix(ns, " 1") {
		t.Errorf("pause NSpid = %q, want PID 1 in a new namespace", ns)
	}
	if uid := procStatus(t, l.PausePid, "Uid"); uid != "65534 65534 65534 65534" {
		t.Errorf("pause uid = %q", uid)
	}
	if capEff := procStatus(t, l.PausePid, "CapEff"); capEff != "0000000000000000" {
		t.Errorf("pause CapEff = %q", capEff)
	}
	c := Connect(dir)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	err = c.Call(ctx, "no-such-op", nil, nil)
	if !errors.Is(err, errdefs.ErrUnimplemented) {
		t.Errorf("unknown op: %v, want unimplemented", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !WaitGone(l.Pid, l.StartTime, 5*time.Second) || !WaitGone(l.PausePid, 0, 5*time.Second) {
		t.Errorf("shim or pause still running after shutdown")
	}
	if _, err := os.Stat(filepath.Join(dir, SocketName)); !os.IsNotExist(err) {
		t.Errorf("socket left after shutdown: %v", err)
	}
}

func TestLaunchPlaceFailureKillsShim(t *testing.T) {
	bin := buildShim(t)
	dir := t.TempDir()
	var pid int
	_, err := Launch(context.Background(), LaunchOptions{
		Binary: bin, PodID: "p2", StateDir: dir,
		Place: func(p int) error { pid = p; return errors.New("no cgroup") },
	})
	if err == nil || !strings.Contains(err.Error(), "no cgroup") {
		t.Fatalf("err = %v", err)
	}
	if Alive(pid, 0) {
		t.Errorf("shim %d still alive", pid)
	}
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// The shim's log is opened in the pod dir without following a symlink
// planted at its name.
func TestOpenLogRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "shim.log")); err != nil {
		t.Fatal(err)
	}
	if f, err := openLog(filepath.Join(dir, "shim.log")); err == nil {
		f.Close()
		t.Fatal("opened through a symlink")
	}
	f, err := openLog(filepath.Join(dir, "other.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Lstat(filepath.Join(dir, "other.log")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("log: %v %v", fi, err)
	}
}
