package integration

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/checkpoint"
	"github.com/berth-dev/berth/test/framework"
)

// counterScript counts in memory (a restore must continue from where the
// checkpoint was), writes the count to the rootfs and removes an image
// file (the archive's rootfs changes), and listens on TCP port 7070
// (a listening socket CRIU dumps).
const counterScript = `rm /etc/group; nc -ll -p 7070 -e echo hello & i=0; while true; do i=$((i+1)); echo $i >/tmp/count; echo "count $i"; sleep 0.2; done`

// TestCheckpointContainer: CheckpointContainer refuses what it cannot do
// with a clear code and leaves nothing behind; where CRIU works on this
// kernel, it writes an archive in CRI-O's layout and the container goes
// on counting; crictl checkpoint works too.
func TestCheckpointContainer(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "ckpt")
	id := e.run(t, pod, podCfg, ctrConfig("counter", "sh", "-c", counterScript))
	ctx := framework.Context(t)
	out := t.TempDir()
	checkpointTo := func(id, location string) error {
		_, err := e.d.Runtime.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: location, Timeout: 300})
		return err
	}

	// Refusals that need no CRIU.
	exists := filepath.Join(out, "exists.tar")
	if err := os.WriteFile(exists, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(out, "etc-link")); err != nil {
		t.Fatal(err)
	}
	created := e.create(t, pod, podCfg, ctrConfig("idle", "sleep", "1000"))
	for _, c := range []struct {
		what, id, location string
		code               codes.Code
	}{
		{"unknown container", "nosuchcontainer", filepath.Join(out, "a.tar"), codes.NotFound},
		{"relative location", id, "a.tar", codes.InvalidArgument},
		{"existing file", id, exists, codes.AlreadyExists},
		{"symlink in the path", id, filepath.Join(out, "etc-link", "a.tar"), codes.InvalidArgument},
		{"missing directory", id, filepath.Join(out, "nodir", "a.tar"), codes.InvalidArgument},
		{"berth's own root", id, filepath.Join(e.d.Root, "a.tar"), codes.InvalidArgument},
		{"kernel file system", id, "/proc/a.tar", codes.InvalidArgument},
		{"created, not running", created, filepath.Join(out, "a.tar"), codes.FailedPrecondition},
	} {
		if err := checkpointTo(c.id, c.location); grpcCode(err) != c.code {
			t.Errorf("checkpoint with %s: %v, want %v", c.what, err, c.code)
		}
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep" {
		t.Errorf("an existing file at the location was changed: %q", b)
	}
	if _, err := os.Stat("/etc/a.tar"); err == nil {
		t.Errorf("a checkpoint went through the symlink to /etc/a.tar")
	}

	// Restores from what is no archive are refused before anything is made.
	for _, c := range []struct {
		what, image string
		code        codes.Code
	}{
		{"missing archive", filepath.Join(out, "none.tar"), codes.NotFound},
		{"not an archive", exists, codes.InvalidArgument},
		{"symlink in the path", filepath.Join(out, "etc-link", "passwd"), codes.InvalidArgument},
	} {
		cfg := ctrConfig("restored")
		cfg.Image = &runtimeapi.ImageSpec{Image: c.image}
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if grpcCode(err) != c.code {
			t.Errorf("restore from %s: %v, want %v", c.what, err, c.code)
		}
	}
	if l, err := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil || len(l.Containers) != 2 {
		t.Errorf("refused restores left containers: %v %v", l, err)
	}

	_, criuErr := checkpoint.Check(ctx)
	target := filepath.Join(out, "counter.tar")
	if criuErr != nil {
		// berth must refuse the same way, naming why, and write nothing.
		err := checkpointTo(id, target)
		if grpcCode(err) != codes.FailedPrecondition || !strings.Contains(strings.ToLower(err.Error()), "criu") {
			t.Errorf("checkpoint without a usable CRIU: %v, want FailedPrecondition naming CRIU", err)
		}
		if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("a refused checkpoint left %s: %v", target, serr)
		}
		leftWork(t, e)
		if _, lerr := exec.LookPath("criu"); lerr != nil {
			t.Skipf("criu is not installed (make deps installs it): %v", err)
		}
		t.Skipf("CRIU is installed but cannot checkpoint here, so only the refusals were tested: %v", err)
	}

	before := counterValue(t, e, id)
	if err := checkpointTo(id, target); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	files := archiveFiles(t, target)
	for _, name := range []string{"config.dump", "spec.dump", "checkpoint/inventory.img", "rootfs-diff.tar", "deleted.files", "dump.log", "container.log", "stats-dump"} {
		if _, ok := files[name]; !ok {
			t.Errorf("archive lacks %s (has %v)", name, keys(files))
		}
	}
	var cfg checkpoint.Config
	if err := json.Unmarshal(files["config.dump"], &cfg); err != nil || cfg.ID != id || cfg.Name != "counter" || cfg.RootfsImageName == "" {
		t.Errorf("config.dump = %+v, %v", cfg, err)
	}
	if !strings.Contains(string(files["deleted.files"]), `"/etc/group"`) {
		t.Errorf("deleted.files = %s, want /etc/group", files["deleted.files"])
	}
	diff := tarFiles(t, files["rootfs-diff.tar"])
	if n, err := strconv.Atoi(strings.TrimSpace(string(diff["tmp/count"]))); err != nil || n < before {
		t.Errorf("rootfs-diff.tar's tmp/count = %q, want at least %d", diff["tmp/count"], before)
	}
	// Left running: it goes on counting.
	e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, time.Second)
	deadline := time.Now().Add(time.Minute)
	for counterValue(t, e, id) <= before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("the counter stopped after the checkpoint")
		}
		time.Sleep(200 * time.Millisecond)
	}
	leftWork(t, e)

	exported := filepath.Join(out, "crictl.tar")
	if o, err := e.d.Crictl(t, "checkpoint", "--export", exported, id); err != nil {
		t.Fatalf("crictl checkpoint: %v: %s", err, o)
	}
	if _, ok := archiveFiles(t, exported)["checkpoint/inventory.img"]; !ok {
		t.Errorf("crictl's archive has no CRIU images")
	}

	// Restore into another pod: the counter goes on from where it was
	// dumped (its memory), with the rootfs changes, and its listener.
	pod2, pod2Cfg := e.pod(t, "ckpt-restored")
	rcfg := ctrConfig("restored")
	rcfg.Image = &runtimeapi.ImageSpec{Image: target}
	rid := e.create(t, pod2, pod2Cfg, rcfg)
	if st, _ := e.status(t, rid); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("restored container before start is %v", st.State)
	}
	if _, err := e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: rid}); err != nil {
		t.Fatalf("StartContainer of the restored container: %v", err)
	}
	e.waitState(t, rid, runtimeapi.ContainerState_CONTAINER_RUNNING, time.Second)
	logPath := filepath.Join(pod2Cfg.LogDirectory, "restored.log")
	first := 0
	for deadline := time.Now().Add(time.Minute); first == 0; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(logPath); err == nil {
			for _, l := range logLines(t, logPath) {
				if _, v, ok := strings.Cut(l, "count "); ok {
					first, _ = strconv.Atoi(v)
					break
				}
			}
		}
		if first == 0 && time.Now().After(deadline) {
			t.Fatalf("the restored container printed no count")
		}
	}
	if first <= before {
		t.Errorf("the restored counter printed %d first, want more than %d (counted before the checkpoint)", first, before)
	}
	if r := execLong(t, e, rid, "cat", "/etc/group"); r.ExitCode == 0 {
		t.Errorf("/etc/group, removed before the checkpoint, is back after the restore")
	}
	if n := counterValue(t, e, rid); n < first {
		t.Errorf("the restored rootfs's /tmp/count is %d, below the first count %d", n, first)
	}
	if r := execLong(t, e, rid, "sh", "-c", "nc 127.0.0.1 7070 </dev/null"); !strings.Contains(string(r.Stdout), "hello") {
		t.Errorf("the restored TCP listener did not answer: %q %q exit %d", r.Stdout, r.Stderr, r.ExitCode)
	}
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: rid, Timeout: 5}); err != nil {
		t.Errorf("stop the restored container: %v", err)
	}
	st := e.waitState(t, rid, runtimeapi.ContainerState_CONTAINER_EXITED, time.Minute)
	if st.ExitCode == 0 {
		t.Errorf("the restored counter exited 0 after a stop")
	}
}

func counterValue(t *testing.T, e *ctrEnv, id string) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := execLong(t, e, id, "cat", "/tmp/count")
		if n, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout))); err == nil {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("no count in /tmp/count: %q %q", r.Stdout, r.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// execLong is execSync with a timeout for an emulated VM, where an exec
// can take over ten seconds.
func execLong(t *testing.T, e *ctrEnv, id string, cmd ...string) *runtimeapi.ExecSyncResponse {
	t.Helper()
	resp, err := e.d.Runtime.ExecSync(framework.Context(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 120})
	if err != nil {
		t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	return resp
}

// leftWork fails the test if a checkpoint's work dir outlived it.
func leftWork(t *testing.T, e *ctrEnv) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(e.d.Root, "containers", "*", "checkpoint-*"))
	if len(left) != 0 {
		t.Errorf("checkpoint work dirs left: %v", left)
	}
}

func archiveFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("archive: %v", err)
	}
	return tarFiles(t, b)
}

func tarFiles(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(strings.NewReader(string(b)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = data
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
