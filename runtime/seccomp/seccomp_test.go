package seccomp

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func capSet(extra ...string) *specs.LinuxCapabilities {
	c := append(append([]string{}, defaultCaps...), extra...)
	return &specs.LinuxCapabilities{Bounding: c, Effective: c, Permitted: c}
}

// allowed reports whether some rule allows name without conditions.
func allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

func TestRuntimeDefault(t *testing.T) {
	tests := []struct {
		name  string
		caps  *specs.LinuxCapabilities
		allow []string
		deny  []string
	}{
		{"default caps", capSet(), []string{"read", "write", "execve", "chroot", "openat"},
			[]string{"mount", "unshare", "setns", "reboot", "init_module", "bpf", "kexec_load", "umount2", "pivot_root", "acct"}},
		{"sys_admin", capSet("CAP_SYS_ADMIN"), []string{"mount", "unshare", "setns", "umount2"}, []string{"reboot", "init_module"}},
		{"sys_boot", capSet("CAP_SYS_BOOT"), []string{"reboot"}, []string{"mount"}},
		{"sys_module", capSet("CAP_SYS_MODULE"), []string{"init_module", "delete_module"}, []string{"mount"}},
		{"sys_pacct", capSet("CAP_SYS_PACCT"), []string{"acct"}, []string{"mount"}},
		{"no chroot cap", &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}, []string{"read"}, []string{"chroot"}},
		{"nil caps", nil, []string{"read", "execve"}, []string{"mount", "chroot"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := RuntimeDefault(tc.caps)
			if err != nil {
				t.Fatal(err)
			}
			if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != uint(unix.EPERM) {
				t.Errorf("default action %s errno %v, want SCMP_ACT_ERRNO EPERM", p.DefaultAction, p.DefaultErrnoRet)
			}
			for _, n := range tc.allow {
				if !allowed(p, n) {
					t.Errorf("%s not allowed", n)
				}
			}
			for _, n := range tc.deny {
				if allowed(p, n) {
					t.Errorf("%s allowed", n)
				}
			}
			if err := Validate(p); err != nil {
				t.Errorf("the default profile does not validate: %v", err)
			}
		})
	}
}

func TestRuntimeDefaultArches(t *testing.T) {
	p, err := RuntimeDefault(capSet())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]specs.Arch{
		"amd64": {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		"arm64": {specs.ArchAARCH64, specs.ArchARM},
	}[runtime.GOARCH]
	if want == nil {
		t.Skipf("no expectation for %s", runtime.GOARCH)
	}
	if !slices.Equal(p.Architectures, want) {
		t.Errorf("architectures %v, want %v", p.Architectures, want)
	}
}

// The clone rule of the default profile blocks namespace flags without
// CAP_SYS_ADMIN by a masked comparison of the flags argument.
func TestRuntimeDefaultCloneRule(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the clone argument order differs on s390")
	}
	find := func(p *specs.LinuxSeccomp) *specs.LinuxSyscall {
		for i, s := range p.Syscalls {
			if slices.Contains(s.Names, "clone") {
				return &p.Syscalls[i]
			}
		}
		return nil
	}
	p, _ := RuntimeDefault(capSet())
	c := find(p)
	if c == nil || c.Action != specs.ActAllow || len(c.Args) != 1 || c.Args[0].Op != specs.OpMaskedEqual ||
		c.Args[0].Value&unix.CLONE_NEWUSER == 0 || c.Args[0].ValueTwo != 0 {
		t.Fatalf("clone rule without CAP_SYS_ADMIN: %+v", c)
	}
	p, _ = RuntimeDefault(capSet("CAP_SYS_ADMIN"))
	if !allowed(p, "clone") {
		t.Errorf("clone not allowed unconditionally with CAP_SYS_ADMIN")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, json string
		caps       *specs.LinuxCapabilities
		wantErr    string // substring; "" = no error
		check      func(t *testing.T, p *specs.LinuxSeccomp)
	}{
		{
			name: "critest block chmod",
			json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}`,
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				if p.DefaultAction != specs.ActAllow || len(p.Syscalls) != 1 || p.Syscalls[0].Action != specs.ActErrno ||
					!slices.Equal(p.Syscalls[0].Names, []string{"chmod", "fchmodat"}) {
					t.Errorf("got %+v", p)
				}
			},
		},
		{
			name: "old name field",
			json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}`,
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				if len(p.Syscalls) != 1 || !slices.Equal(p.Syscalls[0].Names, []string{"mkdir"}) || *p.Syscalls[0].ErrnoRet != 13 {
					t.Errorf("got %+v", p.Syscalls)
				}
			},
		},
		{
			name: "includes and excludes by capability",
			json: `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
				{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
				{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
				{"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}`,
			caps: capSet("CAP_SYS_ADMIN"),
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				if !allowed(p, "read") || !allowed(p, "mount") || allowed(p, "chroot") {
					t.Errorf("got %+v", p.Syscalls)
				}
			},
		},
		{
			name: "archMap keeps this machine's",
			json: `{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [
				{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
				{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}], "syscalls": []}`,
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				if runtime.GOARCH == "amd64" && !slices.Equal(p.Architectures, []specs.Arch{specs.ArchX86_64, specs.ArchX86}) {
					t.Errorf("architectures %v", p.Architectures)
				}
			},
		},
		{
			name: "OCI form with args and flags",
			json: `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"],
				"syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}]}`,
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				a := p.Syscalls[0].Args
				if len(p.Flags) != 2 || len(a) != 1 || a[0].Op != specs.OpMaskedEqual || a[0].Value != 255 || a[0].ValueTwo != 8 {
					t.Errorf("got %+v", p)
				}
			},
		},
		{name: "empty object is no filter", json: `{}`, check: func(t *testing.T, p *specs.LinuxSeccomp) {
			if p != nil {
				t.Errorf("got %+v, want nil", p)
			}
		}},
		{name: "malformed", json: `{"defaultAction": `, wantErr: "Decoding seccomp profile"},
		{name: "not an object", json: `["SCMP_ACT_ALLOW"]`, wantErr: "Decoding seccomp profile"},
		{name: "rules without default action", json: `{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, wantErr: `default action ""`},
		{name: "unknown default action", json: `{"defaultAction": "SCMP_ACT_MAYBE"}`, wantErr: "SCMP_ACT_MAYBE"},
		{name: "unknown rule action", json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "ALLOW"}]}`, wantErr: `unsupported action "ALLOW"`},
		{name: "notify", json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}`, wantErr: "SCMP_ACT_NOTIFY"},
		{name: "listener", json: `{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}`, wantErr: "listenerPath"},
		{name: "unknown arch", json: `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}`, wantErr: "SCMP_ARCH_VAX"},
		{name: "unknown flag", json: `{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}`, wantErr: "SECCOMP_FILTER_FLAG_FAST"},
		{name: "listener flag", json: `{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}`, wantErr: "WAIT_KILLABLE_RECV"},
		{name: "unknown op", json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}`, wantErr: "SCMP_CMP_LIKE"},
		{name: "arg index 6", json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`, wantErr: "argument index 6"},
		{name: "errno too big", json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}`, wantErr: "errno 70000"},
		{name: "no names", json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}`, wantErr: "names no syscall"},
		{name: "name and names", json: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}`, wantErr: "both 'name' and 'names'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			caps := tc.caps
			if caps == nil {
				caps = capSet()
			}
			p, err := Parse([]byte(tc.json), caps)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidProfile) {
					t.Fatalf("err = %v, want ErrInvalidProfile containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"defaultAction": "SCMP_ACT_LOG"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadFile(good, capSet())
	if err != nil || p.DefaultAction != specs.ActLog {
		t.Fatalf("LoadFile = %+v, %v", p, err)
	}
	_, err = LoadFile(filepath.Join(dir, "missing.json"), capSet())
	if !errors.Is(err, ErrInvalidProfile) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("defaultAction: allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = LoadFile(bad, capSet()); !errors.Is(err, ErrInvalidProfile) || !strings.Contains(err.Error(), bad) {
		t.Errorf("malformed file: err = %v", err)
	}
}

func TestArchName(t *testing.T) {
	for in, want := range map[specs.Arch]string{specs.ArchX86_64: "x86_64", specs.ArchX86: "x86", specs.ArchAARCH64: "aarch64", specs.ArchMIPSEL64N32: "mipsel64n32"} {
		if got, err := ArchName(in); err != nil || got != want {
			t.Errorf("ArchName(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// A Localhost profile path is a request's: a device that never ends, a
// FIFO no one writes, a directory or a file too large is refused at once,
// never read into memory or waited on.
func TestLoadFileRefusesWhatIsNoProfile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxProfileSize+1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", fifo, dir, big} {
		done := make(chan error, 1)
		go func() { _, err := LoadFile(p, capSet()); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrInvalidProfile) {
				t.Errorf("%s: %v, want ErrInvalidProfile", p, err)
			}
		case <-time.After(time.Minute): // a bound on a hang
			t.Fatalf("%s: LoadFile hangs", p)
		}
	}
}
