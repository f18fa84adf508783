package integration

import (
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/seccomp/filter"
)

// execProbe prints what an exec's process was given: credentials,
// capabilities, no_new_privs, seccomp, limits, OOM score, umask, working
// directory, cgroup, namespaces, session, signal handling and open fds.
const execProbe = `grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|SigBlk|SigIgn):' /proc/self/status
ulimit -n; ulimit -u; cat /proc/self/oom_score_adj; umask; pwd; echo "env=$PLAN_ENV"
grep -E '` + "memory|^0::" + `' /proc/self/cgroup
for ns in ipc mnt net pid uts user cgroup; do readlink /proc/self/ns/$ns; done
[ "$(cut -d' ' -f6 /proc/self/stat)" = "$$" ] && echo session-leader
ls /proc/self/fd | wc -l`

// TestRuntimeExecPlan: an exec without a terminal, which the C code of
// runtime/nsenter finishes from a plan without starting Go, gets exactly
// what the Go init gives it (the same probe prints the same), for a
// container with a user, groups, reduced capabilities, no_new_privs,
// rlimits, an OOM score, a umask and the runtime/default seccomp profile;
// and the values are the spec's, not merely equal.
func TestRuntimeExecPlan(t *testing.T) {
	e := newRuntimeEnv(t)
	b := e.bundle(t, "plan")
	s := e.baseSpec("plan", "sleep", "1000")
	s.Linux.Seccomp = seccompOf(t, &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}})
	c, output := e.create(t, b, s)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Destroy()
		_, _ = c.Wait()
		output()
	})
	oom, umask := 123, uint32(0o027)
	caps := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	p := *s.Process
	p.Args = []string{"sh", "-c", execProbe}
	p.Env = append(p.Env, "PLAN_ENV=x y")
	p.Cwd = "/tmp"
	p.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{2000, 2001}, Umask: &umask}
	p.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps[:1], Permitted: caps, Inheritable: caps[1:2], Ambient: caps[1:2]}
	p.NoNewPrivileges = true
	p.OOMScoreAdj = &oom
	p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 321, Hard: 654}, {Type: "RLIMIT_NPROC", Soft: 77, Hard: 77}}

	viaPlan := execWith(t, e, c, s, &p, execHelper)
	viaGo := execWith(t, e, c, s, &p, execGoInit)
	if viaPlan != viaGo {
		t.Fatalf("the exec plan gives\n%s\nthe Go init gives\n%s", viaPlan, viaGo)
	}
	if viaSpawn := execWith(t, e, c, s, &p, execSpawn); viaSpawn != viaGo {
		t.Fatalf("the spawned exec gives\n%s\nthe Go init gives\n%s", viaSpawn, viaGo)
	}
	// A signal the caller ignores stays ignored through the clone
	// (CLONE_CLEAR_SIGHAND resets only handled ones); the command must
	// still get it at its default. The second run takes the files the
	// first kept.
	signal.Ignore(syscall.SIGWINCH)
	defer signal.Reset(syscall.SIGWINCH)
	var files process.ExecFiles
	defer files.Close()
	for range 2 {
		if viaKept := execWithFiles(t, e, c, s, &p, execSpawn, &files); viaKept != viaGo {
			t.Fatalf("the spawned exec with kept files gives\n%s\nthe Go init gives\n%s", viaKept, viaGo)
		}
	}
	for _, want := range []string{
		"Uid:\t1000\t1000\t1000\t1000\n", "Gid:\t1001\t1001\t1001\t1001\n", "Groups:\t2000 2001 \n",
		// Not root: after execve only the ambient set is left.
		"CapInh:\t0000000000000020\n", "CapPrm:\t0000000000000020\n", "CapEff:\t0000000000000020\n",
		"CapBnd:\t0000000000000421\n", "CapAmb:\t0000000000000020\n", "NoNewPrivs:\t1\n", "Seccomp:\t2\n",
		"SigBlk:\t0000000000000000\n", "SigIgn:\t0000000000000000\n",
		"\n321\n77\n123\n0027\n/tmp\nenv=x y\n", "session-leader\n",
		// stdin, stdout, stderr and the fd ls opens: nothing leaked.
		"\n4\n",
	} {
		if !strings.Contains(viaPlan, want) {
			t.Errorf("exec output lacks %q:\n%s", want, viaPlan)
		}
	}
	for _, ns := range []string{"ipc", "mnt", "net", "pid", "uts"} {
		ctr, err := os.Readlink("/proc/" + strconv.Itoa(c.Pid()) + "/ns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(viaPlan, ctr+"\n") {
			t.Errorf("exec is not in the container's %s namespace %s:\n%s", ns, ctr, viaPlan)
		}
	}
	if line := cgroupLine(s.Linux.CgroupsPath); !strings.Contains(viaPlan, line+"\n") {
		t.Errorf("exec is not in the container's cgroup %s:\n%s", line, viaPlan)
	}

	// What the Go init refuses, the plan refuses with the same words.
	p.Args = []string{"no-such-tool"}
	for _, how := range []execHow{execHelper, execGoInit, execSpawn} {
		_, err := process.Exec(process.ExecOpts{InitPath: e.initPath, Pid: c.Pid(), Spec: s, Process: &p,
			GoInit: how == execGoInit, Now: how == execSpawn})
		if err == nil || !strings.Contains(err.Error(), "exec no-such-tool: executable file not found in $PATH") {
			t.Errorf("exec of a missing command (%s): %v", how, err)
		}
	}
	p.Args, p.Cwd = []string{"true"}, "/no-such-dir"
	for _, how := range []execHow{execHelper, execSpawn} {
		_, err := process.Exec(process.ExecOpts{InitPath: e.initPath, Pid: c.Pid(), Spec: s, Process: &p, Now: how == execSpawn})
		if err == nil || !strings.Contains(err.Error(), "chdir /no-such-dir: No such file or directory") {
			t.Errorf("exec in a missing directory (%s): %v", how, err)
		}
	}
}

// execHow is the way an exec's process is made: a helper that runs the
// exec plan (berth-shim init with a plan), the Go init, or spawned from
// the caller (process.ExecOpts.Now).
type execHow string

const (
	execHelper execHow = "plan helper"
	execGoInit execHow = "Go init"
	execSpawn  execHow = "spawned"
)

// execWith runs p in c the way how says and returns its output (stdout
// and stderr); it must exit 0.
func execWith(t *testing.T, e *runtimeEnv, c *process.Container, s *specs.Spec, p *specs.Process, how execHow) string {
	t.Helper()
	return execWithFiles(t, e, c, s, p, how, nil)
}

// execWithFiles is execWith with files kept across execs (ExecOpts.Files).
func execWithFiles(t *testing.T, e *runtimeEnv, c *process.Container, s *specs.Spec, p *specs.Process, how execHow, files *process.ExecFiles) string {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	x, err := process.Exec(process.ExecOpts{InitPath: e.initPath, Pid: c.Pid(), Spec: s, Process: p,
		Stdin: null, Stdout: outW, Stderr: outW, GoInit: how == execGoInit, Now: how == execSpawn, Files: files})
	outW.Close()
	if err != nil {
		t.Fatalf("exec (%s): %v", how, err)
	}
	if x.Spawned() != (how == execSpawn) {
		t.Fatalf("exec (%s): spawned %v", how, x.Spawned())
	}
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(outR)
	st, err := x.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 0 {
		t.Fatalf("exec (%s) exited %d:\n%s", how, st.Code, out)
	}
	return string(out)
}

// TestSeccompCompiledByBerthd: berthd puts the container's profile,
// compiled, next to its config.json, and the container and its execs (the
// exec plan's path) are confined by it.
func TestSeccompCompiledByBerthd(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "bpf")
	cfg := ctrConfig("confined", "sleep", "1000")
	cfg.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	id := e.run(t, pod, podCfg, cfg)
	data, err := os.ReadFile(filepath.Join(e.d.State, "containers", id, filter.BundleFile))
	if err != nil {
		t.Fatalf("no compiled program in the bundle: %v", err)
	}
	var prog filter.Program
	if err := prog.UnmarshalBinary(data); err != nil || len(prog.Filter) < 10 {
		t.Fatalf("bundle program: %v (%d instructions)", err, len(prog.Filter))
	}
	out := e.execSync(t, id, "sh", "-c", "grep -E '^Seccomp(_filters)?:' /proc/self/status /proc/1/status")
	want := "/proc/self/status:Seccomp:\t2\n/proc/self/status:Seccomp_filters:\t1\n/proc/1/status:Seccomp:\t2\n/proc/1/status:Seccomp_filters:\t1\n"
	if out.ExitCode != 0 || string(out.Stdout) != want {
		t.Errorf("exec: exit %d stdout %q stderr %q, want %q", out.ExitCode, out.Stdout, out.Stderr, want)
	}
}

// TestRuntimeExecFilesKept: spawned execs given ExecFiles open the
// container's namespaces and cgroup once and reuse them, Close closes
// them, and an exec after Close still runs and keeps nothing open.
func TestRuntimeExecFilesKept(t *testing.T) {
	e := newRuntimeEnv(t)
	c, s := e.startSleeper(t, "kept")
	mnt, err := os.Readlink("/proc/" + strconv.Itoa(c.Pid()) + "/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	// held counts our descriptors on the container's mount namespace.
	held := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && l == mnt {
				n++
			}
		}
		return n
	}
	p := *s.Process
	p.Args = []string{"true"}
	var files process.ExecFiles
	for i := range 3 {
		execWithFiles(t, e, c, s, &p, execSpawn, &files)
		if n := held(); n != 1 {
			t.Fatalf("after exec %d: %d descriptors on the container's mount namespace, want 1 kept", i+1, n)
		}
	}
	files.Close()
	if n := held(); n != 0 {
		t.Fatalf("after Close: %d descriptors on the container's mount namespace", n)
	}
	execWithFiles(t, e, c, s, &p, execSpawn, &files)
	if n := held(); n != 0 {
		t.Fatalf("an exec after Close kept %d descriptors on the container's mount namespace", n)
	}
}
