package filter

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/seccomp"
)

func TestProgramEncoding(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagLog},
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdirat"}, Action: specs.ActErrno}},
	}
	prog, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint(unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW); prog.Flags != want {
		t.Errorf("flags %#x, want %#x", prog.Flags, want)
	}
	// The program starts by checking the architecture: it loads
	// seccomp_data.arch (offset 4).
	if len(prog.Filter) < 4 || prog.Filter[0].Code != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || prog.Filter[0].K != 4 {
		t.Fatalf("not a seccomp program: %+v", prog.Filter[:min(4, len(prog.Filter))])
	}
	data, err := prog.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Program
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if back.Flags != prog.Flags || !slices.Equal(back.Filter, prog.Filter) {
		t.Errorf("round trip changed the program")
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("notberth"), data[8:]...),
		"truncated": data[:len(data)-3],
		"longer":    append(slices.Clone(data), make([]byte, 8)...),
	} {
		if err := new(Program).UnmarshalBinary(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestCache(t *testing.T) {
	var c Cache
	a, err := seccomp.RuntimeDefault(caps())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := seccomp.RuntimeDefault(caps())
	admin, _ := seccomp.RuntimeDefault(caps("CAP_SYS_ADMIN"))
	pa, err := c.Program(a)
	if err != nil {
		t.Fatal(err)
	}
	if pb, err := c.Program(b); err != nil || pb != pa {
		t.Errorf("the same profile compiled twice (%v)", err)
	}
	if pc, err := c.Program(admin); err != nil || pc == pa {
		t.Errorf("another profile got the same program (%v)", err)
	}
	if _, err := c.Program(&specs.LinuxSeccomp{DefaultAction: specs.ActNotify}); err == nil {
		t.Error("a bad profile compiled")
	}
}

// A program handed down in a file, as the container init receives it.
func TestLoadProgramFile(t *testing.T) {
	var c Cache
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(unix.ENOTTY)}},
	}
	f, err := c.File(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	programFile = f
	defer func() { programFile = nil }()
	got, err := runChild(t, nil, true, "getppid", "threads")
	if err != nil {
		t.Fatal(err)
	}
	if got["getppid"] != unix.ENOTTY || got["threads"] != 0 {
		t.Errorf("getppid %v (want ENOTTY), threads %v", got["getppid"], got["threads"])
	}
	if _, err := ReadProgram(f); err != nil {
		t.Errorf("the file cannot be read twice: %v", err)
	}
}
