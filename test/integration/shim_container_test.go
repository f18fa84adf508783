package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/test/framework"
)

// shimEnv is a pod shim started for one test, with the runtime test image.
type shimEnv struct {
	*runtimeEnv
	client   *shim.Client
	shimPid  int
	shimDir  string
	launched *shim.Launched
}

func newShimEnv(t *testing.T) *shimEnv {
	e := &shimEnv{runtimeEnv: newRuntimeEnv(t)}
	e.shimDir = filepath.Join(e.dir, "pod")
	mkdirs(t, e.shimDir)
	// The pod's log directory, as the kubelet makes it.
	mkdirs(t, filepath.Join(e.dir, "logs"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := shim.Launch(ctx, shim.LaunchOptions{
		Binary:   filepath.Join(framework.BinDir(t), "berth-shim"),
		PodID:    "shimtest",
		StateDir: e.shimDir,
		LogPath:  filepath.Join(e.shimDir, "shim.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.launched, e.shimPid, e.client = l, l.Pid, shim.Connect(e.shimDir)
	t.Cleanup(func() {
		if shim.Alive(l.Pid, l.StartTime) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := e.client.Shutdown(ctx); err != nil {
				t.Errorf("shim shutdown: %v", err)
			}
			if !shim.WaitGone(l.Pid, l.StartTime, 10*time.Second) {
				_ = unix.Kill(l.Pid, unix.SIGKILL)
				t.Errorf("shim %d did not exit", l.Pid)
			}
		}
		b, _ := os.ReadFile(filepath.Join(e.shimDir, "shim.log"))
		if strings.Contains(string(b), "DATA RACE") || strings.Contains(string(b), "panic:") {
			t.Errorf("the shim (built with -race?) reported a problem")
		}
		if t.Failed() && len(b) > 0 {
			t.Logf("shim log:\n%s", b)
		}
	})
	return e
}

func (e *shimEnv) call(t *testing.T, op string, args, result any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.client.Call(ctx, op, args, result)
}

// ctr is one container made through the shim.
type ctr struct {
	id, bundle, stateDir, logPath string
	spec                          *specs.Spec
}

// create makes the bundle and asks the shim to create the container.
func (e *shimEnv) create(t *testing.T, name string, s *specs.Spec, mod func(*shim.CreateArgs)) (ctr, shim.ContainerState, error) {
	t.Helper()
	c := ctr{id: name, bundle: e.bundle(t, name), stateDir: filepath.Join(e.dir, name+"-state"), logPath: filepath.Join(e.dir, "logs", name+".log"), spec: s}
	mkdirs(t, c.stateDir)
	writeSpec(t, c.bundle, s)
	cgroup(t, s) // berthd's part
	args := shim.CreateArgs{ID: c.id, BundleDir: c.bundle, StateDir: c.stateDir, LogPath: c.logPath}
	if mod != nil {
		mod(&args)
	}
	var st shim.ContainerState
	err := e.call(t, shim.OpCreate, args, &st)
	if err == nil {
		// Runs before the bundle's rootfs is unmounted.
		t.Cleanup(func() {
			if !shim.Alive(e.shimPid, e.launched.StartTime) {
				return // shut down by the test: its containers went with it
			}
			if err := e.call(t, shim.OpDelete, shim.IDArgs{ID: c.id}, nil); err != nil {
				t.Errorf("delete %s: %v", c.id, err)
			}
		})
	}
	return c, st, err
}

func (e *shimEnv) mustCreate(t *testing.T, name string, s *specs.Spec) (ctr, shim.ContainerState) {
	t.Helper()
	c, st, err := e.create(t, name, s, nil)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return c, st
}

func (e *shimEnv) start(t *testing.T, c ctr) shim.ContainerState {
	t.Helper()
	var st shim.ContainerState
	if err := e.call(t, shim.OpStart, shim.IDArgs{ID: c.id}, &st); err != nil {
		t.Fatalf("start %s: %v", c.id, err)
	}
	return st
}

func (e *shimEnv) state(t *testing.T, id string) shim.ContainerState {
	t.Helper()
	var st shim.ContainerState
	if err := e.call(t, shim.OpState, shim.IDArgs{ID: id}, &st); err != nil {
		t.Fatalf("state %s: %v", id, err)
	}
	return st
}

func (e *shimEnv) waitExited(t *testing.T, id string) shim.ContainerState {
	t.Helper()
	const within = 2 * time.Minute
	deadline := time.Now().Add(within)
	for {
		st := e.state(t, id)
		if st.Status == shim.StatusExited {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for container %s to exit: still %s after %s", id, st.Status, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readExit(t *testing.T, c ctr) shim.ExitRecord {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.stateDir, shim.ExitFile))
	if err != nil {
		t.Fatalf("exit record of %s: %v", c.id, err)
	}
	var rec shim.ExitRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("exit record of %s: %v (%q)", c.id, err, data)
	}
	return rec
}

// logRecords parses the CRI log into "stream tag text" strings, checking
// the timestamp of each.
func logRecords(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	re := regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("bad log line %q", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatalf("bad timestamp in %q: %v", line, err)
		}
		out = append(out, m[2]+" "+m[3]+" "+m[4])
	}
	return out
}

func cgroupGone(t *testing.T, path string) {
	t.Helper()
	if _, err := cgroups.Load(path); err == nil {
		t.Errorf("cgroup %s is left", path)
	}
}

// cgroupEmpty: the cgroup (berthd's, which the test made) holds no process.
func cgroupEmpty(t *testing.T, path string) {
	t.Helper()
	g, err := cgroupfs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if pids, err := g.Pids(); err != nil || len(pids) != 0 {
		t.Errorf("cgroup %s holds %v (%v)", path, pids, err)
	}
}

func processGone(t *testing.T, pid int) {
	t.Helper()
	if pid > 0 && shim.Alive(pid, 0) {
		t.Errorf("process %d is left", pid)
	}
}

func TestShimContainerLifecycle(t *testing.T) {
	e := newShimEnv(t)
	s := e.baseSpec("life", "sh", "-c", "touch /tmp/ran; echo out; echo err >&2; printf tail")
	c, st := e.mustCreate(t, "life", s)
	if st.Status != shim.StatusCreated || st.Pid <= 0 || !st.StartedAt.IsZero() {
		t.Fatalf("after create: %+v", st)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(c.bundle, "upper/tmp/ran")); err == nil {
		t.Fatal("command ran before start")
	}
	if st := e.state(t, c.id); st.Status != shim.StatusCreated {
		t.Fatalf("state after create: %+v", st)
	}
	if err := e.call(t, shim.OpCreate, shim.CreateArgs{ID: c.id, BundleDir: c.bundle, StateDir: c.stateDir}, nil); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second create with the same id: %v", err)
	}
	before := time.Now()
	st = e.start(t, c)
	if st.Status != shim.StatusRunning && st.Status != shim.StatusExited || st.StartedAt.Before(before.Add(-time.Second)) {
		t.Fatalf("after start: %+v", st)
	}
	if err := e.call(t, shim.OpStart, shim.IDArgs{ID: c.id}, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("second start: %v", err)
	}
	st = e.waitExited(t, c.id)
	if st.ExitCode != 0 || st.OOMKilled || st.FinishedAt.Before(st.StartedAt) || st.StartedAt.IsZero() {
		t.Fatalf("exited: %+v", st)
	}
	rec := readExit(t, c)
	if rec.ExitCode != 0 || rec.Pid != st.Pid || !rec.StartedAt.Equal(st.StartedAt) || !rec.FinishedAt.Equal(st.FinishedAt) {
		t.Fatalf("exit record %+v, state %+v", rec, st)
	}
	got := logRecords(t, c.logPath)
	sort.Strings(got) // stdout and stderr race
	if want := []string{"stderr F err", "stdout F out", "stdout P tail"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log records %q, want %q", got, want)
	}
	if err := e.call(t, shim.OpKill, shim.KillArgs{ID: c.id, Signal: 9, All: true}, nil); err != nil {
		t.Errorf("kill of an exited container: %v", err)
	}
	if err := e.call(t, shim.OpDelete, shim.IDArgs{ID: c.id}, nil); err != nil {
		t.Fatal(err)
	}
	cgroupGone(t, s.Linux.CgroupsPath)
	processGone(t, st.Pid)
	if err := e.call(t, shim.OpState, shim.IDArgs{ID: c.id}, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("state after delete: %v", err)
	}
	if err := e.call(t, shim.OpDelete, shim.IDArgs{ID: c.id}, nil); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func TestShimContainerExitCodes(t *testing.T) {
	e := newShimEnv(t)
	for _, tc := range []struct {
		name string
		cmd  string
		code int
	}{{"zero", "exit 0", 0}, {"one", "exit 1", 1}, {"fortytwo", "exit 42", 42}} {
		c, _ := e.mustCreate(t, tc.name, e.baseSpec(tc.name, "sh", "-c", tc.cmd))
		e.start(t, c)
		st := e.waitExited(t, c.id)
		rec := readExit(t, c)
		if st.ExitCode != tc.code || rec.ExitCode != tc.code || st.OOMKilled || rec.OOMKilled {
			t.Errorf("%s: state %+v record %+v, want code %d", tc.name, st, rec, tc.code)
		}
	}
}

func TestShimContainerKill(t *testing.T) {
	e := newShimEnv(t)
	// PID 1 of a namespace gets only the signals it handles.
	c, _ := e.mustCreate(t, "term", e.baseSpec("term", "sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done"))
	e.start(t, c)
	waitLog(t, c.logPath, "stdout F ready")
	if err := e.call(t, shim.OpKill, shim.KillArgs{ID: c.id, Signal: int(unix.SIGTERM)}, nil); err != nil {
		t.Fatal(err)
	}
	if st := e.waitExited(t, c.id); st.ExitCode != 3 {
		t.Errorf("after SIGTERM: %+v", st)
	}

	c2, _ := e.mustCreate(t, "killall", e.baseSpec("killall", "sh", "-c", "sleep 100 & sleep 100"))
	st := e.start(t, c2)
	if err := e.call(t, shim.OpKill, shim.KillArgs{ID: c2.id, Signal: int(unix.SIGKILL), All: true}, nil); err != nil {
		t.Fatal(err)
	}
	if st := e.waitExited(t, c2.id); st.ExitCode != 137 {
		t.Errorf("after SIGKILL to all: %+v", st)
	}
	processGone(t, st.Pid)

	// Killing a created container ends it without running the command.
	c3, st3 := e.mustCreate(t, "unstarted", e.baseSpec("unstarted", "touch", "/tmp/ran"))
	if err := e.call(t, shim.OpKill, shim.KillArgs{ID: c3.id, Signal: int(unix.SIGKILL)}, nil); err != nil {
		t.Fatal(err)
	}
	if st := e.waitExited(t, c3.id); st.ExitCode != 137 || !st.StartedAt.IsZero() {
		t.Errorf("killed before start: %+v", st)
	}
	if err := e.call(t, shim.OpStart, shim.IDArgs{ID: c3.id}, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("start of an exited container: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c3.bundle, "upper/tmp/ran")); err == nil {
		t.Error("killed container ran its command")
	}
	processGone(t, st3.Pid)
	if err := e.call(t, shim.OpKill, shim.KillArgs{ID: "nope", Signal: 9}, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("kill of an unknown container: %v", err)
	}
	if err := e.call(t, shim.OpKill, shim.KillArgs{ID: c3.id, Signal: 0}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("kill with signal 0: %v", err)
	}
}

// waitLog waits until the log holds a record.
func waitLog(t *testing.T, path, record string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(path); err == nil && strings.Contains(string(data), " "+record+"\n") {
			return
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(path)
			t.Fatalf("log %s lacks %q:\n%s", path, record, data)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShimContainerInitEnds: without a PID namespace of its own the
// container's other processes would outlive its init; the shim ends them.
func TestShimContainerInitEnds(t *testing.T) {
	e := newShimEnv(t)
	s := e.baseSpec("orphans", "sh", "-c", "sleep 100 & echo $!")
	var ns []specs.LinuxNamespace
	for _, n := range s.Linux.Namespaces {
		if n.Type != specs.PIDNamespace {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
	c, _ := e.mustCreate(t, "orphans", s)
	e.start(t, c)
	st := e.waitExited(t, c.id)
	if st.ExitCode != 0 {
		t.Fatalf("exited: %+v", st)
	}
	recs := logRecords(t, c.logPath)
	if len(recs) != 1 {
		t.Fatalf("log %q", recs)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(recs[0], "stdout F "))
	if err != nil {
		t.Fatal(err)
	}
	if !shim.WaitGone(pid, 0, 5*time.Second) {
		t.Errorf("background process %d outlived the container's init", pid)
	}
	cgroupEmpty(t, s.Linux.CgroupsPath)
}

func TestShimContainerOOM(t *testing.T) {
	e := newShimEnv(t)
	limit := int64(16 << 20)
	s := e.baseSpec("oom", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	c, _ := e.mustCreate(t, "oom", s)
	e.start(t, c)
	st := e.waitExited(t, c.id)
	rec := readExit(t, c)
	if st.ExitCode != 137 || !st.OOMKilled || rec.ExitCode != 137 || !rec.OOMKilled {
		t.Fatalf("state %+v record %+v, want 137 and OOM", st, rec)
	}
}

func TestShimContainerCreateErrors(t *testing.T) {
	e := newShimEnv(t)
	s := e.baseSpec("missing", "no-such-command")
	_, _, err := e.create(t, "missing", s, nil)
	if err == nil || !strings.Contains(err.Error(), "no-such-command") {
		t.Fatalf("create with a missing command: %v", err)
	}
	cgroupEmpty(t, s.Linux.CgroupsPath)
	if _, err := os.Stat(filepath.Join(e.dir, "logs", "missing.log")); err == nil {
		t.Error("a failed create left its log file")
	}
	if err := e.call(t, shim.OpState, shim.IDArgs{ID: "missing"}, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("state after a failed create: %v", err)
	}

	s = e.baseSpec("badmount", "true")
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: filepath.Join(e.dir, "no-such-dir"), Options: []string{"rbind"}})
	if _, _, err := e.create(t, "badmount", s, nil); err == nil || !strings.Contains(err.Error(), "no-such-dir") {
		t.Errorf("create with a missing mount source: %v", err)
	}
	cgroupEmpty(t, s.Linux.CgroupsPath)

	for name, mod := range map[string]func(*shim.CreateArgs){
		"noid":     func(a *shim.CreateArgs) { a.ID = "" },
		"slashid":  func(a *shim.CreateArgs) { a.ID = "a/b" },
		"relative": func(a *shim.CreateArgs) { a.BundleDir = "bundle" },
		"nospec":   func(a *shim.CreateArgs) { a.BundleDir = e.dir },
		"nostate":  func(a *shim.CreateArgs) { a.StateDir = filepath.Join(e.dir, "none") },
	} {
		s := e.baseSpec(name, "true")
		if _, _, err := e.create(t, name, s, mod); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
		cgroupEmpty(t, s.Linux.CgroupsPath)
	}
	// Nothing of the failures is left among the shim's children.
	if kids := children(t, e.shimPid); len(kids) != 0 {
		t.Errorf("shim has children %v after failed creates", kids)
	}
}

// children lists a process's child pids.
func children(t *testing.T, pid int) []string {
	t.Helper()
	var kids []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		kids = append(kids, strings.Fields(string(b))...)
	}
	return kids
}

func TestShimContainerReopenLog(t *testing.T) {
	e := newShimEnv(t)
	syncDir := t.TempDir()
	s := e.baseSpec("rotate", "sh", "-c", `echo one; w() { while [ ! -e /sync/$1 ]; do sleep 0.02; done; }; w go; echo two; w go2; echo three; w go3; echo four; sleep 100`)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sync", Type: "bind", Source: syncDir, Options: []string{"rbind"}})
	c, _ := e.mustCreate(t, "rotate", s)
	e.start(t, c)
	waitLog(t, c.logPath, "stdout F one")
	if err := os.Rename(c.logPath, c.logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := e.call(t, shim.OpReopenLog, shim.IDArgs{ID: c.id}, nil); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(syncDir, "go"), "")
	waitLog(t, c.logPath, "stdout F two")
	if got := logRecords(t, c.logPath); len(got) != 1 {
		t.Errorf("new log %q", got)
	}
	if got := logRecords(t, c.logPath+".1"); len(got) != 1 || got[0] != "stdout F one" {
		t.Errorf("rotated log %q", got)
	}

	// A reopen that fails keeps the current file (here gone with its dir):
	// the next reopen resumes the log at its path.
	logDir := filepath.Dir(c.logPath)
	if err := os.Rename(logDir, logDir+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := e.call(t, shim.OpReopenLog, shim.IDArgs{ID: c.id}, nil); err == nil {
		t.Fatal("reopen into a missing dir succeeded")
	}
	writeFile(t, filepath.Join(syncDir, "go2"), "")
	time.Sleep(200 * time.Millisecond)
	mkdirs(t, logDir)
	if err := e.call(t, shim.OpReopenLog, shim.IDArgs{ID: c.id}, nil); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(syncDir, "go3"), "")
	waitLog(t, c.logPath, "stdout F four")
	// "three" is lost if it came before the second reopen.
	if got := strings.Join(logRecords(t, c.logPath), "|"); got != "stdout F four" && got != "stdout F three|stdout F four" {
		t.Errorf("log after a failed reopen %q", got)
	}
	if err := e.call(t, shim.OpReopenLog, shim.IDArgs{ID: "nope"}, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("reopen of an unknown container: %v", err)
	}
}

// TestShimShutdownStopsContainers: the shim's shutdown kills its
// containers, records their ends and removes their cgroups.
func TestShimShutdownStopsContainers(t *testing.T) {
	e := newShimEnv(t)
	var ctrs []ctr
	var pids []int
	for _, name := range []string{"one", "two"} {
		c, st := e.mustCreate(t, name, e.baseSpec(name, "sleep", "100"))
		if name == "one" {
			e.start(t, c)
		}
		ctrs, pids = append(ctrs, c), append(pids, st.Pid)
	}
	if rss, err := rssKiB(e.shimPid); err == nil {
		t.Logf("shim RSS with 2 containers: %d KiB", rss)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.client.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !shim.WaitGone(e.shimPid, e.launched.StartTime, 10*time.Second) {
		t.Fatal("shim did not exit")
	}
	for i, c := range ctrs {
		processGone(t, pids[i])
		cgroupGone(t, c.spec.Linux.CgroupsPath)
		if rec := readExit(t, c); rec.ExitCode != 137 {
			t.Errorf("%s: exit record %+v", c.id, rec)
		}
	}
}

func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0, errors.New("no VmRSS")
	}
	return strconv.Atoi(string(m[1]))
}

// execLimit bounds the output of the shim tests' exec-syncs.
const execLimit = 16 << 20

func (e *shimEnv) execSync(t *testing.T, id string, timeout time.Duration, cmd ...string) *shim.ExecSyncResult {
	t.Helper()
	res, err := e.execSyncErr(shim.ExecSyncArgs{ID: id, Cmd: cmd, Timeout: timeout})
	if err != nil {
		t.Fatalf("exec-sync %v: %v", cmd, err)
	}
	return res
}

func (e *shimEnv) execSyncErr(args shim.ExecSyncArgs) (*shim.ExecSyncResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.client.ExecSync(ctx, args, execLimit)
}

func TestShimContainerExecSync(t *testing.T) {
	e := newShimEnv(t)
	s := e.baseSpec("exec", "sleep", "100")
	s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000}}
	s.Process.Cwd = "/tmp"
	s.Process.Env = append(s.Process.Env, "FOO=bar")
	s.Process.NoNewPrivileges = true
	c, _ := e.mustCreate(t, "exec", s)
	if _, err := e.execSyncErr(shim.ExecSyncArgs{ID: c.id, Cmd: []string{"true"}}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("exec-sync in a created container: %v", err)
	}
	e.start(t, c)

	res := e.execSync(t, c.id, 0, "sh", "-c", "echo out; echo err >&2; exit 3")
	if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 3 || res.TimedOut {
		t.Errorf("exec-sync: %+v (stdout %q stderr %q)", res, res.Stdout, res.Stderr)
	}

	res = e.execSync(t, c.id, 0, "sh", "-c", `
echo "hostname=$(hostname)"
echo "id=$(id)"
echo "cwd=$(pwd)"
echo "foo=$FOO"
grep -E '^(NoNewPrivs|CapEff):' /proc/self/status
echo "init=$(cat /proc/1/cmdline | tr '\0' ' ')"
cat /proc/self/cgroup
echo "layer=$(cat /etc/layer)"`)
	if res.ExitCode != 0 {
		t.Fatalf("exec-sync: %+v (stdout %q stderr %q)", res, res.Stdout, res.Stderr)
	}
	for _, want := range []string{
		"hostname=ctr-exec\n",
		"id=uid=1000(app) gid=1000(app) groups=2000(extra)\n",
		"cwd=/tmp\n",
		"foo=bar\n",
		"NoNewPrivs:\t1\n",
		"CapEff:\t0000000000000000\n",
		"init=sleep 100 \n", // the container's PID namespace
		":" + s.Linux.CgroupsPath + "\n",
		"layer=top\n", // its rootfs
	} {
		if !strings.Contains(string(res.Stdout), want) {
			t.Errorf("exec output lacks %q:\n%s%s", want, res.Stdout, res.Stderr)
		}
	}

	t0 := time.Now()
	res = e.execSync(t, c.id, 300*time.Millisecond, "sh", "-c", "sleep 50 & sleep 60")
	if !res.TimedOut || time.Since(t0) > 5*time.Second {
		t.Errorf("exec-sync with a timeout: %+v after %v", res, time.Since(t0))
	}
	// The timed-out command and its children are gone: only the
	// container's init is left in its cgroup.
	g, err := cgroupfs.Open(s.Linux.CgroupsPath)
	if err != nil {
		t.Fatal(err)
	}
	// Killed, they leave the cgroup as the kernel finishes their exit: a
	// moment after the exec's own process was reaped.
	var pids []int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pids, err = g.Pids(); err != nil || len(pids) == 1 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(pids) != 1 {
		t.Errorf("cgroup holds %v after the timeout (%v)", pids, err)
	}

	// As with runc, a command that cannot be executed is an error, not an exit code.
	if _, err := e.execSyncErr(shim.ExecSyncArgs{ID: c.id, Cmd: []string{"no-such-command"}}); err == nil || !strings.Contains(err.Error(), "no-such-command") {
		t.Errorf("exec-sync of a missing command: %v", err)
	}

	big := e.execSync(t, c.id, 0, "dd", "if=/dev/zero", "bs=1M", "count=20")
	// dd's summary on stderr is kept whole; stdout fills the rest.
	if len(big.Stdout)+len(big.Stderr) != execLimit || !strings.Contains(string(big.Stderr), "records out") || big.StdoutBytes != 20<<20 || big.ExitCode != 0 {
		t.Errorf("exec-sync of 20 MiB: %d of %d bytes kept, stderr %q, exit %d", len(big.Stdout), big.StdoutBytes, big.Stderr, big.ExitCode)
	}

	const n = 30
	var lat []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		res := e.execSync(t, c.id, 10*time.Second, "true")
		lat = append(lat, time.Since(t0))
		if res.ExitCode != 0 {
			t.Fatalf("exec-sync true: %+v", res)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("exec-sync latency over %d: p50 %v p95 %v", n, lat[n/2], lat[n*95/100])
	if rss, err := rssKiB(e.shimPid); err == nil {
		t.Logf("shim RSS after %d exec-syncs: %d KiB", n+5, rss)
	}
}

// TestShimContainerTerminal: a container with a terminal logs the
// console's output as stdout.
func TestShimContainerTerminal(t *testing.T) {
	e := newShimEnv(t)
	s := e.baseSpec("tty", "sh", "-c", "tty; echo to-stderr >&2")
	s.Process.Terminal = true
	c, _, err := e.create(t, "tty", s, func(a *shim.CreateArgs) { a.Tty, a.Stdin = true, true })
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, c)
	if st := e.waitExited(t, c.id); st.ExitCode != 0 {
		t.Fatalf("exited: %+v", st)
	}
	got := logRecords(t, c.logPath)
	if want := []string{"stdout F /dev/pts/0", "stdout F to-stderr"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log records %q, want %q", got, want)
	}
}

// TestShimContainerDeleteRunning: delete kills a running container, records
// its end and removes its cgroup.
func TestShimContainerDeleteRunning(t *testing.T) {
	e := newShimEnv(t)
	s := e.baseSpec("running", "sh", "-c", "sleep 100 & sleep 100")
	c, st := e.mustCreate(t, "running", s)
	e.start(t, c)
	if err := e.call(t, shim.OpDelete, shim.IDArgs{ID: c.id}, nil); err != nil {
		t.Fatal(err)
	}
	processGone(t, st.Pid)
	cgroupGone(t, s.Linux.CgroupsPath)
	if rec := readExit(t, c); rec.ExitCode != 137 || rec.StartedAt.IsZero() {
		t.Errorf("exit record %+v", rec)
	}
	if kids := children(t, e.shimPid); len(kids) != 0 {
		t.Errorf("shim has children %v after delete", kids)
	}
}

// TestShimContainerSharedPID: in a pod's shared PID namespace (the shim's
// pause process is its PID 1) containers see each other, exec-sync works,
// and what a container's init leaves behind goes when the init ends.
func TestShimContainerSharedPID(t *testing.T) {
	e := &shimEnv{runtimeEnv: newRuntimeEnv(t)}
	e.shimDir = filepath.Join(e.dir, "pod")
	mkdirs(t, e.shimDir)
	// The pod's log directory, as the kubelet makes it.
	mkdirs(t, filepath.Join(e.dir, "logs"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := shim.Launch(ctx, shim.LaunchOptions{
		Binary: filepath.Join(framework.BinDir(t), "berth-shim"), PodID: "shimtest-pid", StateDir: e.shimDir,
		LogPath: filepath.Join(e.shimDir, "shim.log"), Pause: &shim.PauseOptions{},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.launched, e.shimPid, e.client = l, l.Pid, shim.Connect(e.shimDir)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.client.Shutdown(ctx); err != nil {
			t.Errorf("shim shutdown: %v", err)
		}
		if !shim.WaitGone(l.Pid, l.StartTime, 10*time.Second) {
			_ = unix.Kill(l.Pid, unix.SIGKILL)
		}
		if !shim.WaitGone(l.PausePid, 0, 5*time.Second) {
			t.Errorf("pause %d is left", l.PausePid)
		}
	})
	pidNS := fmt.Sprintf("/proc/%d/ns/pid", l.PausePid)
	shared := func(name string, args ...string) *specs.Spec {
		s := e.baseSpec(name, args...)
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.PIDNamespace {
				s.Linux.Namespaces[i].Path = pidNS
			}
		}
		return s
	}
	a, _ := e.mustCreate(t, "a", shared("a", "sleep", "100"))
	e.start(t, a)
	res := e.execSync(t, a.id, 10*time.Second, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'")
	if !strings.HasPrefix(string(res.Stdout), "berth-shim pause \n") {
		t.Errorf("PID 1 seen by an exec: %q (%q)", res.Stdout, res.Stderr)
	}

	b, _ := e.mustCreate(t, "b", shared("b", "sh", "-c", "sleep 100 & echo $!"))
	e.start(t, b)
	if st := e.waitExited(t, b.id); st.ExitCode != 0 {
		t.Fatalf("b exited: %+v", st)
	}
	cgroupEmpty(t, b.spec.Linux.CgroupsPath)
	// a is still there, b's orphan is not.
	res = e.execSync(t, a.id, 10*time.Second, "sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done")
	if strings.Count(string(res.Stdout), "sleep 100") != 1 {
		t.Errorf("processes in the pod:\n%s", res.Stdout)
	}
}

// TestShimContainerCreateStartLatency measures create + start of a trivial
// container through the shim (rootfs, spec and cgroup ready, as berthd
// has them when it calls the shim).
func TestShimContainerCreateStartLatency(t *testing.T) {
	e := newShimEnv(t)
	const n = 20
	var lat []time.Duration
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("lat%d", i)
		s := e.baseSpec(name, "true")
		c := ctr{id: name, bundle: e.bundle(t, name), stateDir: filepath.Join(e.dir, name+"-state"), logPath: filepath.Join(e.dir, "logs", name+".log"), spec: s}
		mkdirs(t, c.stateDir)
		writeSpec(t, c.bundle, s)
		cgroup(t, s)
		t0 := time.Now()
		if err := e.call(t, shim.OpCreate, shim.CreateArgs{ID: c.id, BundleDir: c.bundle, StateDir: c.stateDir, LogPath: c.logPath}, nil); err != nil {
			t.Fatal(err)
		}
		e.start(t, c)
		lat = append(lat, time.Since(t0))
		if st := e.waitExited(t, c.id); st.ExitCode != 0 {
			t.Fatalf("exited: %+v", st)
		}
		if err := e.call(t, shim.OpDelete, shim.IDArgs{ID: c.id}, nil); err != nil {
			t.Fatal(err)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("create+start through the shim over %d: p50 %v p95 %v", n, lat[n/2], lat[n*95/100])
}

// TestShimContainerConcurrent runs several containers' whole lives through
// one shim at once.
func TestShimContainerConcurrent(t *testing.T) {
	e := newShimEnv(t)
	const n = 6
	type prepared struct {
		c    ctr
		args shim.CreateArgs
	}
	var ps []prepared
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("par%d", i)
		s := e.baseSpec(name, "sh", "-c", "echo hi; sleep 100")
		c := ctr{id: name, bundle: e.bundle(t, name), stateDir: filepath.Join(e.dir, name+"-state"), logPath: filepath.Join(e.dir, "logs", name+".log"), spec: s}
		mkdirs(t, c.stateDir)
		writeSpec(t, c.bundle, s)
		cgroup(t, s)
		ps = append(ps, prepared{c, shim.CreateArgs{ID: c.id, BundleDir: c.bundle, StateDir: c.stateDir, LogPath: c.logPath}})
	}
	errs := make(chan error, n)
	for _, p := range ps {
		go func() {
			errs <- func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := e.client.Call(ctx, shim.OpCreate, p.args, nil); err != nil {
					return err
				}
				if err := e.client.Call(ctx, shim.OpStart, shim.IDArgs{ID: p.c.id}, nil); err != nil {
					return err
				}
				for i := 0; i < 3; i++ {
					res, err := e.client.ExecSync(ctx, shim.ExecSyncArgs{ID: p.c.id, Cmd: []string{"hostname"}, Timeout: 10 * time.Second}, execLimit)
					if err != nil {
						return err
					}
					if string(res.Stdout) != "ctr-"+p.c.id+"\n" {
						return fmt.Errorf("%s: exec-sync hostname %q", p.c.id, res.Stdout)
					}
				}
				if err := e.client.Call(ctx, shim.OpDelete, shim.IDArgs{ID: p.c.id}, nil); err != nil {
					return err
				}
				return nil
			}()
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, p := range ps {
		cgroupGone(t, p.c.spec.Linux.CgroupsPath)
		if rec := readExit(t, p.c); rec.ExitCode != 137 {
			t.Errorf("%s: exit record %+v", p.c.id, rec)
		}
		if got := logRecords(t, p.c.logPath); len(got) != 1 || got[0] != "stdout F hi" {
			t.Errorf("%s: log %q", p.c.id, got)
		}
	}
	if kids := children(t, e.shimPid); len(kids) != 0 {
		t.Errorf("shim has children %v", kids)
	}
}

// TestShimContainerDeleteDuringCreate: a delete that arrives while the
// create runs (berthd undoing a create its caller gave up on) removes what
// the create made.
func TestShimContainerDeleteDuringCreate(t *testing.T) {
	e := newShimEnv(t)
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("undo%d", i)
		s := e.baseSpec(name, "sleep", "100")
		c := ctr{id: name, bundle: e.bundle(t, name), stateDir: filepath.Join(e.dir, name+"-state"), spec: s}
		mkdirs(t, c.stateDir)
		writeSpec(t, c.bundle, s)
		cgroup(t, s)
		created := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			created <- e.client.Call(ctx, shim.OpCreate, shim.CreateArgs{ID: c.id, BundleDir: c.bundle, StateDir: c.stateDir}, nil)
		}()
		time.Sleep(time.Duration(i) * time.Millisecond)
		if err := e.call(t, shim.OpDelete, shim.IDArgs{ID: c.id}, nil); err != nil {
			t.Errorf("delete during create: %v", err)
		}
		if err := <-created; err != nil {
			t.Fatalf("create: %v", err)
		}
		// Either the delete came first (then the create made a container
		// that is still there) or it waited and removed it.
		if err := e.call(t, shim.OpState, shim.IDArgs{ID: c.id}, nil); err == nil {
			if err := e.call(t, shim.OpDelete, shim.IDArgs{ID: c.id}, nil); err != nil {
				t.Fatal(err)
			}
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatal(err)
		}
		cgroupGone(t, s.Linux.CgroupsPath)
	}
	if kids := children(t, e.shimPid); len(kids) != 0 {
		t.Errorf("shim has children %v", kids)
	}
}
