package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/test/framework"
)

// TestContainerLogPathHostile: what others can put in the pod's log
// directory (a symlink, a hard link to a host file, a symlinked subdir) or
// a log path that leaves it never makes berth write elsewhere: the create
// is refused naming the path, the file pointed to is unchanged, the link
// stays, and nothing of the container is left. A reopen after the log was
// replaced by a symlink is refused and keeps writing the current file.
func TestContainerLogPathHostile(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "hostile")
	logDir := podCfg.LogDirectory
	mkdirs(t, logDir)
	ctx := framework.Context(t)
	host := filepath.Join(e.dir, "host-file")
	writeFile(t, host, "host\n")
	hostUnchanged := func(what string) {
		t.Helper()
		if b, err := os.ReadFile(host); err != nil || string(b) != "host\n" {
			t.Errorf("%s: host file now %q (%v)", what, b, err)
		}
	}
	symlink := func(target, at string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(logDir, at)); err != nil {
			t.Fatal(err)
		}
	}
	symlink(host, "evil.log")
	symlink(filepath.Join(e.dir, "new-file"), "dangling.log")
	symlink(e.dir, "sub")
	if err := os.Link(host, filepath.Join(logDir, "hard.log")); err != nil {
		t.Fatal(err)
	}
	for _, logPath := range []string{"evil.log", "dangling.log", "sub/x.log", "hard.log", "../escape.log", "sub/../../escape.log"} {
		cfg := ctrConfig("c", "echo", "written")
		cfg.LogPath = logPath
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), filepath.Base(logPath)) {
			t.Errorf("log path %s: %v, want InvalidArgument naming it", logPath, err)
		}
		hostUnchanged(logPath)
		e.nothingLeft(t)
	}
	for _, p := range []string{filepath.Join(e.dir, "new-file"), filepath.Join(e.dir, "x.log"), filepath.Join(e.dir, "logs", "escape.log")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s was made: %v", p, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(logDir, "evil.log")); err != nil || target != host {
		t.Errorf("the symlink at the log path: %q, %v", target, err)
	}
	if fi, err := os.Lstat(filepath.Join(logDir, "hard.log")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the hard link at the log path: %v", err)
	}

	// The kubelet's layout: <container>/<restart count>.log, the
	// container's dir made below the pod's log directory by berth.
	talker := ctrConfig("talker", "sh", "-c", "while :; do echo tick; sleep 0.05; done")
	talker.LogPath = "talker/0.log"
	id := e.run(t, pod, podCfg, talker)
	logPath := filepath.Join(logDir, "talker", "0.log")
	waitGrows(t, logPath)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	symlink(host, "talker/0.log")
	_, err := e.d.Runtime.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	if grpcCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "talker/0.log") {
		t.Errorf("reopen onto a symlink: %v, want FailedPrecondition naming the path", err)
	}
	// The current file goes on (the kubelet renames it back).
	waitGrows(t, logPath+".1")
	hostUnchanged("reopen")
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatalf("reopen once the symlink is gone: %v", err)
	}
	waitGrows(t, logPath)
	hostUnchanged("second reopen")
}

// waitGrows waits until the file at path exists and grows.
func waitGrows(t *testing.T, path string) {
	t.Helper()
	size := func() int64 {
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		return fi.Size()
	}
	first := size()
	deadline := time.Now().Add(time.Minute)
	for first < 0 || size() <= first {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not grow (size %d)", path, first)
		}
		time.Sleep(20 * time.Millisecond)
		if first < 0 {
			first = size()
		}
	}
}

// TestShimContainerLogSymlink: the shim itself, whatever berthd checked
// before, refuses a symlink at the log path or in a dir on the way, and a
// log path out of its log directory; nothing is written through them and
// no process is left.
func TestShimContainerLogSymlink(t *testing.T) {
	e := newShimEnv(t)
	logDir := filepath.Join(e.dir, "logs")
	host := filepath.Join(e.dir, "host-file")
	writeFile(t, host, "host\n")
	if err := os.Symlink(host, filepath.Join(logDir, "evil.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e.dir, filepath.Join(logDir, "up")); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*shim.CreateArgs){
		"evil":   nil,
		"subdir": func(a *shim.CreateArgs) { a.LogDir, a.LogPath = logDir, filepath.Join(logDir, "up", "x.log") },
		"out":    func(a *shim.CreateArgs) { a.LogDir, a.LogPath = logDir, filepath.Join(e.dir, "x.log") },
	} {
		s := e.baseSpec(name, "echo", "written")
		_, _, err := e.create(t, name, s, mod)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
		cgroupEmpty(t, s.Linux.CgroupsPath)
	}
	if b, err := os.ReadFile(host); err != nil || string(b) != "host\n" {
		t.Errorf("host file now %q (%v)", b, err)
	}
	if target, err := os.Readlink(filepath.Join(logDir, "evil.log")); err != nil || target != host {
		t.Errorf("the symlink at the log path: %q, %v", target, err)
	}
	if _, err := os.Lstat(filepath.Join(e.dir, "x.log")); !os.IsNotExist(err) {
		t.Errorf("a log was made out of the log directory: %v", err)
	}
}

// TestContainerLogDirMade: a missing pod log directory (a client that,
// unlike the kubelet, did not make it) is made as real directories; but a
// symlink planted in its parents is not followed: the create is refused
// naming the directory, nothing is made where the symlink points, and
// nothing of the container is left.
func TestContainerLogDirMade(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)

	podCfg := e.podConfig("deep")
	podCfg.LogDirectory = filepath.Join(e.dir, "logs", "deep", "a", "b")
	pod := runPod(t, e.d, podCfg)
	t.Cleanup(func() { removePod(t, e.d, pod) })
	cfg := ctrConfig("c", "echo", "written")
	cfg.LogPath = "c/0.log"
	e.create(t, pod, podCfg, cfg)
	for _, d := range []string{filepath.Join(e.dir, "logs", "deep", "a"), podCfg.LogDirectory, filepath.Join(podCfg.LogDirectory, "c")} {
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory made", d, err)
		}
	}

	elsewhere := filepath.Join(e.dir, "elsewhere")
	mkdirs(t, elsewhere, filepath.Join(e.dir, "logs"))
	if err := os.Symlink(elsewhere, filepath.Join(e.dir, "logs", "planted")); err != nil {
		t.Fatal(err)
	}
	hostileCfg := e.podConfig("planted")
	hostileCfg.LogDirectory = filepath.Join(e.dir, "logs", "planted", "pod")
	hostile := runPod(t, e.d, hostileCfg)
	t.Cleanup(func() { removePod(t, e.d, hostile) })
	before, _ := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	cfg = ctrConfig("c", "echo", "written")
	cfg.LogPath = "c/0.log"
	_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: hostile, Config: cfg, SandboxConfig: hostileCfg})
	if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), hostileCfg.LogDirectory) {
		t.Errorf("log directory below a symlink: %v, want InvalidArgument naming it", err)
	}
	if entries, err := os.ReadDir(elsewhere); err != nil || len(entries) != 0 {
		t.Errorf("%s now holds %d entries (%v)", elsewhere, len(entries), err)
	}
	after, _ := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if len(after.GetContainers()) != len(before.GetContainers()) {
		t.Errorf("containers: %d before the refused create, %d after", len(before.GetContainers()), len(after.GetContainers()))
	}
}
