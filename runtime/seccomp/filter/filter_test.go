package filter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/seccomp"
)

// The test binary plays the filtered process: started again with
// childEnv naming a profile file, it loads the profile, runs the probes
// named in its arguments and prints "probe errno" lines.
const (
	childEnv = "BERTH_SECCOMP_TEST_PROFILE"
	nnpEnv   = "BERTH_SECCOMP_TEST_NNP"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(child(path, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func child(path string, probes []string) int {
	runtime.LockOSThread()
	if os.Getenv(nnpEnv) != "" {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			fmt.Println("load", err)
			return 3
		}
	}
	if path == "fd" {
		// A compiled program handed down as the container init gets it.
		prog, err := ReadProgram(os.NewFile(3, "program"))
		if err == nil {
			err = prog.Load()
		}
		if err != nil {
			fmt.Println("load", strings.ReplaceAll(err.Error(), " ", "_"))
			return 3
		}
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Println("load", err)
			return 3
		}
		var p specs.LinuxSeccomp
		if err := json.Unmarshal(data, &p); err != nil {
			fmt.Println("load", err)
			return 3
		}
		if err := Load(&p); err != nil {
			fmt.Println("load", strings.ReplaceAll(err.Error(), " ", "_"))
			return 3
		}
	}
	for _, probe := range probes {
		name, arg, _ := strings.Cut(probe, ":")
		var errno syscall.Errno
		switch name {
		case "unshare-uts":
			_, _, errno = unix.RawSyscall(unix.SYS_UNSHARE, unix.CLONE_NEWUTS, 0, 0)
		case "mkdir":
			if err := unix.Mkdirat(unix.AT_FDCWD, arg, 0o755); err != nil {
				errno = err.(syscall.Errno)
			}
		case "getpriority":
			who, _ := strconv.ParseUint(arg, 0, 64)
			_, _, errno = unix.RawSyscall(unix.SYS_GETPRIORITY, unix.PRIO_PROCESS, uintptr(who), 0)
		case "getppid":
			_, _, errno = unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
		case "mseal":
			// A zero length seals nothing.
			_, _, errno = unix.RawSyscall(unix.SYS_MSEAL, 0, 0, 0)
		case "statmount":
			_, _, errno = unix.RawSyscall6(unix.SYS_STATMOUNT, 0, 0, 0, 0, 0, 0)
		case "threads":
			// Every thread of the process is filtered, not just this one.
			errno = 0
			tasks, _ := os.ReadDir("/proc/self/task")
			for _, task := range tasks {
				st, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
				if !strings.Contains(string(st), "Seccomp:\t2") {
					errno = unix.ESRCH
				}
			}
			if len(tasks) < 2 {
				errno = unix.ECHILD
			}
		default:
			fmt.Println("unknown-probe", name)
			return 3
		}
		fmt.Println(probe, int(errno))
	}
	return 0
}

// programFile, when set, is handed to the child instead of the profile.
var programFile *os.File

// runChild loads p in a new process and returns each probe's errno.
func runChild(t *testing.T, p *specs.LinuxSeccomp, nnp bool, probes ...string) (map[string]syscall.Errno, error) {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], probes...)
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	if programFile != nil {
		cmd.Env = append(os.Environ(), childEnv+"=fd")
		cmd.ExtraFiles = []*os.File{programFile}
	}
	if nnp {
		cmd.Env = append(cmd.Env, nnpEnv+"=1")
	}
	out, err := cmd.Output()
	got := map[string]syscall.Errno{}
	s := bufio.NewScanner(strings.NewReader(string(out)))
	for s.Scan() {
		k, v, _ := strings.Cut(s.Text(), " ")
		if k == "load" {
			return nil, fmt.Errorf("load failed: %s", v)
		}
		n, _ := strconv.Atoi(v)
		got[k] = syscall.Errno(n)
	}
	if err != nil {
		return nil, fmt.Errorf("child: %v: %s", err, out)
	}
	return got, nil
}

func errnoPtr(e syscall.Errno) *uint { u := uint(e); return &u }

func caps(extra ...string) *specs.LinuxCapabilities {
	c := append([]string{"CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL"}, extra...)
	return &specs.LinuxCapabilities{Bounding: c, Effective: c, Permitted: c}
}

// The runtime/default profile gives EPERM for unshare without CAP_SYS_ADMIN
// in the container's bounding set, which root (this test) would otherwise
// be allowed.
func TestLoadRuntimeDefault(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: unshare(CLONE_NEWUTS) must succeed without the filter")
	}
	unconfined := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	got, err := runChild(t, unconfined, true, "unshare-uts", "threads")
	if err != nil {
		t.Fatal(err)
	}
	if got["unshare-uts"] != 0 || got["threads"] != 0 {
		t.Fatalf("allow-all filter: unshare %v, threads %v", got["unshare-uts"], got["threads"])
	}

	p, err := seccomp.RuntimeDefault(caps())
	if err != nil {
		t.Fatal(err)
	}
	got, err = runChild(t, p, true, "unshare-uts", "getppid", "threads", "mseal", "statmount")
	if err != nil {
		t.Fatal(err)
	}
	if got["unshare-uts"] != unix.EPERM {
		t.Errorf("unshare under runtime/default without CAP_SYS_ADMIN: %v, want EPERM", got["unshare-uts"])
	}
	// Allowed by the profile, unknown to Debian 12's libseccomp: the
	// kernel's answer, not the filter's EPERM.
	for _, sc := range []string{"mseal", "statmount"} {
		if got[sc] == unix.EPERM {
			t.Errorf("%s refused by runtime/default", sc)
		}
	}
	if got["getppid"] != 0 || got["threads"] != 0 {
		t.Errorf("getppid %v, all threads filtered %v", got["getppid"], got["threads"])
	}

	p, _ = seccomp.RuntimeDefault(caps("CAP_SYS_ADMIN"))
	// Without no_new_privs: root holds CAP_SYS_ADMIN, which the kernel accepts instead.
	got, err = runChild(t, p, false, "unshare-uts")
	if err != nil {
		t.Fatal(err)
	}
	if got["unshare-uts"] != 0 {
		t.Errorf("unshare under runtime/default with CAP_SYS_ADMIN: %v, want success", got["unshare-uts"])
	}
}

func TestLoadErrnoAndUnknownSyscalls(t *testing.T) {
	dir := t.TempDir()
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			// An unknown name is skipped, the known ones of the rule kept.
			{Names: []string{"no_such_syscall_berth", "mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(unix.EROFS)},
			// A rule with the default action changes nothing and must not fail.
			{Names: []string{"getppid"}, Action: specs.ActAllow},
		},
	}
	got, err := runChild(t, p, true, "mkdir:"+filepath.Join(dir, "d"), "getppid")
	if err != nil {
		t.Fatal(err)
	}
	if got["mkdir:"+filepath.Join(dir, "d")] != unix.EROFS {
		t.Errorf("mkdirat: %v, want EROFS", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); err == nil {
		t.Errorf("the directory was made")
	}
	// SCMP_ACT_ERRNO without errnoRet is EPERM; a default errno applies to
	// everything else.
	p = &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: errnoPtr(unix.ENOSYS),
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActErrno},
		},
	}
	allowRuntime(p)
	got, err = runChild(t, p, true, "getppid", "unshare-uts")
	if err != nil {
		t.Fatal(err)
	}
	if got["getppid"] != unix.EPERM || got["unshare-uts"] != unix.ENOSYS {
		t.Errorf("getppid %v (want EPERM), unshare %v (want ENOSYS)", got["getppid"], got["unshare-uts"])
	}
}

// allowRuntime lets a deny-by-default profile run the child's Go runtime.
func allowRuntime(p *specs.LinuxSeccomp) {
	base, _ := seccomp.RuntimeDefault(caps())
	for _, s := range base.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 {
			var names []string
			for _, n := range s.Names {
				if n != "getppid" && n != "unshare" {
					names = append(names, n)
				}
			}
			p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{Names: names, Action: specs.ActAllow})
		}
	}
}

// Each comparison operator, on getpriority's second argument: a match
// returns the rule's errno, anything else the real result (0 or ESRCH).
func TestLoadArgumentOperators(t *testing.T) {
	const hit = unix.EDOM
	tests := []struct {
		op          specs.LinuxSeccompOperator
		value, two  uint64
		match, miss []uint64
	}{
		{specs.OpEqualTo, 1 << 30, 0, []uint64{1 << 30}, []uint64{1<<30 + 1, 0}},
		{specs.OpNotEqual, 0, 0, []uint64{1 << 30, 1}, []uint64{0}},
		{specs.OpLessThan, 1 << 30, 0, []uint64{0, 1<<30 - 1}, []uint64{1 << 30, 1<<30 + 1}},
		{specs.OpLessEqual, 1 << 30, 0, []uint64{0, 1 << 30}, []uint64{1<<30 + 1}},
		{specs.OpGreaterThan, 1 << 30, 0, []uint64{1<<30 + 1}, []uint64{1 << 30, 0}},
		{specs.OpGreaterEqual, 1 << 30, 0, []uint64{1 << 30, 1<<30 + 5}, []uint64{1<<30 - 1, 0}},
		// (arg & 0xf0000000) == 0x40000000
		{specs.OpMaskedEqual, 0xf0000000, 0x40000000, []uint64{0x40000000, 0x4000ffff}, []uint64{0x50000000, 0x0000ffff, 0}},
	}
	for _, tc := range tests {
		t.Run(string(tc.op), func(t *testing.T) {
			p := &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{{
					Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(hit),
					Args: []specs.LinuxSeccompArg{{Index: 1, Value: tc.value, ValueTwo: tc.two, Op: tc.op}},
				}},
			}
			var probes []string
			for _, v := range append(append([]uint64{}, tc.match...), tc.miss...) {
				probes = append(probes, fmt.Sprintf("getpriority:%#x", v))
			}
			got, err := runChild(t, p, true, probes...)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.match {
				if e := got[fmt.Sprintf("getpriority:%#x", v)]; e != hit {
					t.Errorf("%#x: %v, want the rule's EDOM", v, e)
				}
			}
			for _, v := range tc.miss {
				if e := got[fmt.Sprintf("getpriority:%#x", v)]; e == hit {
					t.Errorf("%#x matched", v)
				}
			}
		})
	}
}

// Conditions on different arguments must all hold; several on the same
// argument are alternatives (Docker's reading).
func TestLoadCombinedConditions(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{
			Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(unix.EDOM),
			Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.PRIO_PROCESS, Op: specs.OpEqualTo},
				{Index: 1, Value: 1 << 30, Op: specs.OpEqualTo},
			},
		}, {
			Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(unix.EDOM),
			Args: []specs.LinuxSeccompArg{
				{Index: 1, Value: 1<<30 + 10, Op: specs.OpEqualTo},
				{Index: 1, Value: 1<<30 + 20, Op: specs.OpEqualTo},
			},
		}},
	}
	got, err := runChild(t, p, true, "getpriority:0x40000000", "getpriority:0x40000001", "getpriority:0x4000000a", "getpriority:0x40000014", "getpriority:0x4000000b")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"getpriority:0x40000000": true, "getpriority:0x40000001": false, "getpriority:0x4000000a": true, "getpriority:0x40000014": true, "getpriority:0x4000000b": false}
	for probe, match := range want {
		if (got[probe] == unix.EDOM) != match {
			t.Errorf("%s: %v, match %v", probe, got[probe], match)
		}
	}
}

// Without no_new_privs the kernel wants CAP_SYS_ADMIN: a process without it
// cannot load (why the container init loads before dropping capabilities
// when no_new_privs is off).
func TestLoadNeedsNoNewPrivsOrSysAdmin(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root holds CAP_SYS_ADMIN")
	}
	_, err := runChild(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}, false, "getppid")
	if err == nil || !strings.Contains(err.Error(), "load failed") {
		t.Fatalf("err = %v, want a load failure", err)
	}
}

func TestBuild(t *testing.T) {
	p, err := seccomp.RuntimeDefault(caps())
	if err != nil {
		t.Fatal(err)
	}
	p.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagLog, "SECCOMP_FILTER_FLAG_TSYNC"}
	f, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	if ssb, err := f.GetSSB(); err != nil || !ssb {
		t.Errorf("SPEC_ALLOW: %v %v", ssb, err)
	}
	if log, err := f.GetLogBit(); err != nil || !log {
		t.Errorf("LOG: %v %v", log, err)
	}
	if nnp, err := f.GetNoNewPrivsBit(); err != nil || nnp {
		t.Errorf("the filter would set no_new_privs itself: %v %v", nnp, err)
	}
	out, err := os.CreateTemp(t.TempDir(), "pfc")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := f.ExportPFC(out); err != nil {
		t.Fatal(err)
	}
	pfc, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(pfc), "x86_64") && runtime.GOARCH == "amd64" {
		t.Errorf("PFC without x86_64:\n%.500s", pfc)
	}

	for name, bad := range map[string]*specs.LinuxSeccomp{
		"nil":          nil,
		"notify":       {DefaultAction: specs.ActNotify},
		"bad op":       {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Op: "SCMP_CMP_X"}}}}},
		"bad arch":     {DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"SCMP_ARCH_Z80"}},
		"unknown flag": {DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW_LISTENER"}},
	} {
		if f, err := Build(bad); err == nil {
			f.Release()
			t.Errorf("%s: built", name)
		}
	}
}
