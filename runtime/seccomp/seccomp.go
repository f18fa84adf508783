// Package seccomp makes the OCI seccomp profiles of berth's containers:
// runtime/default (moby's default profile, fitted to the container's
// capabilities and this machine's architecture and kernel) and profiles
// read from a file on the node (Docker's format, which OCI's is a subset
// of). It also checks a profile for anything the loader
// (runtime/seccomp/filter) would refuse, so that a bad profile fails the
// CreateContainer call rather than the container's start.
//
// This package is pure Go: berthd imports it without linking libseccomp.
package seccomp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrInvalidProfile marks a profile that cannot be read, parsed or loaded.
var ErrInvalidProfile = errors.New("invalid seccomp profile")

// RuntimeDefault is the runtime/default profile for a container with these
// capabilities: moby's default, where rules that depend on a capability
// (mount, unshare, reboot...) are kept only when the bounding set has it.
func RuntimeDefault(caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	p, err := mobyseccomp.GetDefaultProfile(capsSpec(caps))
	if err != nil {
		return nil, fmt.Errorf("runtime/default seccomp profile: %w", err)
	}
	return p, nil
}

// Parse reads a profile in Docker's JSON format (archMap, includes and
// excludes by capability, architecture and kernel version) or OCI's, fitted
// to the container's capabilities. A profile with neither a default action
// nor syscalls means no filter: nil, as Docker and containerd read it.
func Parse(data []byte, caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	p, err := mobyseccomp.LoadProfile(string(data), capsSpec(caps))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidProfile, err)
	}
	if p == nil {
		return nil, nil
	}
	if err := Validate(p); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadFile reads and parses the profile file at path (a Localhost profile).
// It must be a regular file of at most MaxProfileSize bytes: the path is a
// request's, and /dev/zero would fill berthd's memory, a FIFO hang the
// create.
func LoadFile(path string, caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	data, err := readProfile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidProfile, err)
	}
	p, err := Parse(data, caps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// MaxProfileSize bounds a Localhost profile file (moby's default profile,
// the largest in common use, is under 30 KiB).
const MaxProfileSize = 4 << 20

func readProfile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO without a writer returns at once.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > MaxProfileSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d a profile may have", path, fi.Size(), MaxProfileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxProfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxProfileSize {
		return nil, fmt.Errorf("%s grew past the %d bytes a profile may have", path, MaxProfileSize)
	}
	return data, nil
}

// capsSpec is the part of a spec moby's profile code reads: the bounding set.
func capsSpec(caps *specs.LinuxCapabilities) *specs.Spec {
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	return &specs.Spec{Process: &specs.Process{Capabilities: caps}}
}

// Actions are the actions the loader applies. SCMP_ACT_NOTIFY is missing
// on purpose: it needs a seccomp agent listening, which berth has not.
var Actions = map[specs.LinuxSeccompAction]bool{
	specs.ActKill: true, specs.ActKillProcess: true, specs.ActKillThread: true,
	specs.ActTrap: true, specs.ActErrno: true, specs.ActTrace: true,
	specs.ActAllow: true, specs.ActLog: true,
}

// Operators are the argument comparisons the loader applies.
var Operators = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual: true, specs.OpLessThan: true, specs.OpLessEqual: true,
	specs.OpEqualTo: true, specs.OpGreaterEqual: true, specs.OpGreaterThan: true,
	specs.OpMaskedEqual: true,
}

// Flags are the seccomp(2) flags the loader applies.
// SECCOMP_FILTER_FLAG_TSYNC is accepted too: every filter berth loads
// synchronises all threads. SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is
// missing: it only means something to a notify listener.
var Flags = map[specs.LinuxSeccompFlag]bool{
	specs.LinuxSeccompFlagLog: true, specs.LinuxSeccompFlagSpecAllow: true,
	"SECCOMP_FILTER_FLAG_TSYNC": true,
}

var arches = map[specs.Arch]bool{
	specs.ArchX86: true, specs.ArchX86_64: true, specs.ArchX32: true, specs.ArchARM: true,
	specs.ArchAARCH64: true, specs.ArchMIPS: true, specs.ArchMIPS64: true, specs.ArchMIPS64N32: true,
	specs.ArchMIPSEL: true, specs.ArchMIPSEL64: true, specs.ArchMIPSEL64N32: true, specs.ArchPPC: true,
	specs.ArchPPC64: true, specs.ArchPPC64LE: true, specs.ArchS390: true, specs.ArchS390X: true,
	specs.ArchPARISC: true, specs.ArchPARISC64: true, specs.ArchRISCV64: true,
	specs.ArchLOONGARCH64: true, specs.ArchM68K: true, specs.ArchSH: true, specs.ArchSHEB: true,
}

// ArchName is libseccomp's name of an OCI architecture
// ("SCMP_ARCH_X86_64" → "x86_64").
func ArchName(a specs.Arch) (string, error) {
	if !arches[a] {
		return "", fmt.Errorf("%w: unknown architecture %q", ErrInvalidProfile, a)
	}
	return strings.ToLower(strings.TrimPrefix(string(a), "SCMP_ARCH_")), nil
}

// maxErrno is the largest errno seccomp can return (SECCOMP_RET_DATA is
// 16 bits, libseccomp takes an int16, and errnos stop at 4095).
const maxErrno = 4095

// Validate reports what in p the loader cannot apply. Unknown syscall names
// are not checked: the loader skips them, as runc does, so that one
// profile serves kernels and libseccomp versions of different ages.
func Validate(p *specs.LinuxSeccomp) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidProfile, fmt.Sprintf(format, args...))
	}
	if !Actions[p.DefaultAction] {
		return bad("unsupported default action %q", p.DefaultAction)
	}
	if p.DefaultErrnoRet != nil && *p.DefaultErrnoRet > maxErrno {
		return bad("default errno %d is out of range", *p.DefaultErrnoRet)
	}
	if p.ListenerPath != "" {
		return bad("seccomp notify listeners (listenerPath) are not supported")
	}
	for _, a := range p.Architectures {
		if _, err := ArchName(a); err != nil {
			return err
		}
	}
	for _, f := range p.Flags {
		if !Flags[f] {
			return bad("unsupported flag %q", f)
		}
	}
	for i, s := range p.Syscalls {
		if len(s.Names) == 0 {
			return bad("syscall rule %d names no syscall", i)
		}
		for _, n := range s.Names {
			if n == "" {
				return bad("syscall rule %d has an empty name", i)
			}
		}
		if !Actions[s.Action] {
			return bad("syscall rule %d (%s): unsupported action %q", i, s.Names[0], s.Action)
		}
		if s.ErrnoRet != nil && *s.ErrnoRet > maxErrno {
			return bad("syscall rule %d (%s): errno %d is out of range", i, s.Names[0], *s.ErrnoRet)
		}
		for _, a := range s.Args {
			if a.Index > 5 {
				return bad("syscall rule %d (%s): argument index %d (syscalls have 6)", i, s.Names[0], a.Index)
			}
			if !Operators[a.Op] {
				return bad("syscall rule %d (%s): unsupported operator %q", i, s.Names[0], a.Op)
			}
		}
	}
	return nil
}
