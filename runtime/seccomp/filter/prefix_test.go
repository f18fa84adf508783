package filter

import (
	"encoding/binary"
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/seccomp"
)

// run interprets prog on a seccomp_data with nr and arch. The interpreter
// loads words big-endian, so each 32-bit field is stored that way.
func run(t *testing.T, prog *Program, nr, arch uint32) uint32 {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog.Filter))
	for i, in := range prog.Filter {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the program has instructions the interpreter does not know")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64) // nr, arch, ip, args[6]
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], arch)
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

// The prefix that allows syscalls libseccomp cannot name applies to the
// native architecture only, and leaves every other decision to
// libseccomp's program.
func TestAllowNewerPrefix(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("numbers below are x86_64's")
	}
	p, err := seccomp.RuntimeDefault(caps())
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	const (
		allow = unix.SECCOMP_RET_ALLOW
		eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		x32   = 0x40000000
	)
	for _, tc := range []struct {
		name     string
		nr, arch uint32
		want     uint32
	}{
		{"read", unix.SYS_READ, unix.AUDIT_ARCH_X86_64, allow},
		{"mseal", unix.SYS_MSEAL, unix.AUDIT_ARCH_X86_64, allow},
		{"statmount", unix.SYS_STATMOUNT, unix.AUDIT_ARCH_X86_64, allow},
		{"uretprobe", unix.SYS_URETPROBE, unix.AUDIT_ARCH_X86_64, allow},
		{"unshare", unix.SYS_UNSHARE, unix.AUDIT_ARCH_X86_64, eperm},
		{"unknown number", 999, unix.AUDIT_ARCH_X86_64, eperm},
		{"mseal on i386", unix.SYS_MSEAL, unix.AUDIT_ARCH_I386, eperm},
		{"mseal on x32", unix.SYS_MSEAL | x32, unix.AUDIT_ARCH_X86_64, eperm},
		{"read on x32", unix.SYS_READ | x32, unix.AUDIT_ARCH_X86_64, allow},
		{"read on i386", 3, unix.AUDIT_ARCH_I386, allow},
	} {
		if got := run(t, prog, tc.nr, tc.arch); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// Without the prefix (a profile that allows everything by default)
	// nothing changes.
	plain, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow})
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, plain, unix.SYS_MSEAL, unix.AUDIT_ARCH_X86_64); got != allow {
		t.Errorf("allow-all: %#x", got)
	}
}
