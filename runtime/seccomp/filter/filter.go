// Package filter compiles an OCI seccomp profile into a BPF program with
// libseccomp and loads it into the kernel. It is used by the container
// init (runtime/containerinit), the last thing it does before execve.
package filter

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/seccomp"
)

// Load compiles p and loads it for every thread of the calling process
// (SECCOMP_FILTER_FLAG_TSYNC), so whatever thread later calls execve is
// filtered. Compiling is slow (see Program): callers that can, load a
// Program from a Cache instead.
//
// Load leaves no_new_privs as it is: the caller sets it when the spec asks.
// Without it the kernel wants CAP_SYS_ADMIN in the caller's effective set,
// so a caller that drops capabilities and keeps no_new_privs unset must
// load the filter before dropping them (runc's order).
func Load(p *specs.LinuxSeccomp) error {
	prog, err := Compile(p)
	if err != nil {
		return err
	}
	return prog.Load()
}

// Build compiles p without loading it; the caller releases the filter.
// Rules naming syscalls that libseccomp does not know are skipped, as runc
// does: a profile lists syscalls of kernels newer than this machine's.
func Build(p *specs.LinuxSeccomp) (_ *libseccomp.ScmpFilter, retErr error) {
	if p == nil {
		return nil, errors.New("no seccomp profile")
	}
	if err := seccomp.Validate(p); err != nil {
		return nil, err
	}
	defAct, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	f, err := libseccomp.NewFilter(defAct)
	if err != nil {
		return nil, fmt.Errorf("new seccomp filter: %w", err)
	}
	defer func() {
		if retErr != nil {
			f.Release()
		}
	}()
	// libseccomp would set no_new_privs itself on load; whether the
	// container gets it is the spec's decision (process.noNewPrivileges).
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: keep no_new_privs: %w", err)
	}
	for _, a := range p.Architectures {
		name, err := seccomp.ArchName(a)
		if err != nil {
			return nil, err
		}
		arch, err := libseccomp.GetArchFromString(name)
		if err != nil {
			return nil, fmt.Errorf("%w: architecture %s: %w", seccomp.ErrInvalidProfile, a, err)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("seccomp: add architecture %s: %w", a, err)
		}
	}
	for _, fl := range p.Flags {
		if err := setFlag(f, fl); err != nil {
			return nil, err
		}
	}
	for _, s := range p.Syscalls {
		if err := addRule(f, defAct, s); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func setFlag(f *libseccomp.ScmpFilter, fl specs.LinuxSeccompFlag) error {
	var err error
	switch fl {
	case "SECCOMP_FILTER_FLAG_TSYNC":
		// Already set by libseccomp-golang for every filter.
	case specs.LinuxSeccompFlagLog:
		err = f.SetLogBit(true)
	case specs.LinuxSeccompFlagSpecAllow:
		err = f.SetSSB(true)
	default:
		err = fmt.Errorf("%w: unsupported flag", seccomp.ErrInvalidProfile)
	}
	if err != nil {
		return fmt.Errorf("seccomp flag %s: %w", fl, err)
	}
	return nil
}

func action(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	ret := func(def int16) int16 {
		if errnoRet != nil {
			return int16(*errnoRet)
		}
		return def
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActTrap.SetReturnCode(ret(0)), nil
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(ret(int16(unix.EPERM))), nil
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(ret(int16(unix.EPERM))), nil
	case specs.ActAllow:
		return libseccomp.ActAllow, nil
	case specs.ActLog:
		return libseccomp.ActLog, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("%w: unsupported action %q", seccomp.ErrInvalidProfile, a)
}

var operators = map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
	specs.OpNotEqual:     libseccomp.CompareNotEqual,
	specs.OpLessThan:     libseccomp.CompareLess,
	specs.OpLessEqual:    libseccomp.CompareLessOrEqual,
	specs.OpEqualTo:      libseccomp.CompareEqual,
	specs.OpGreaterEqual: libseccomp.CompareGreaterEqual,
	specs.OpGreaterThan:  libseccomp.CompareGreater,
	specs.OpMaskedEqual:  libseccomp.CompareMaskedEqual,
}

func addRule(f *libseccomp.ScmpFilter, defAct libseccomp.ScmpAction, s specs.LinuxSyscall) error {
	act, err := action(s.Action, s.ErrnoRet)
	if err != nil {
		return err
	}
	// libseccomp refuses a rule whose action is the default one; it would
	// change nothing anyway.
	if act == defAct {
		return nil
	}
	var conds []libseccomp.ScmpCondition
	perArg := map[uint]int{}
	for _, a := range s.Args {
		values := []uint64{a.Value}
		if a.Op == specs.OpMaskedEqual {
			// (arg & Value) == ValueTwo
			values = append(values, a.ValueTwo)
		}
		c, err := libseccomp.MakeCondition(a.Index, operators[a.Op], values...)
		if err != nil {
			return fmt.Errorf("%w: %s argument %d: %w", seccomp.ErrInvalidProfile, s.Names[0], a.Index, err)
		}
		conds = append(conds, c)
		perArg[a.Index]++
	}
	// Conditions on different arguments must all hold. Several conditions
	// on the same argument are alternatives, each its own rule: that is
	// how Docker's profiles are written (and libseccomp cannot AND them).
	sameArg := false
	for _, n := range perArg {
		sameArg = sameArg || n > 1
	}
	for _, name := range s.Names {
		call, err := libseccomp.GetSyscallFromName(name)
		if err != nil {
			continue
		}
		switch {
		case len(conds) == 0:
			err = f.AddRule(call, act)
		case sameArg:
			for _, c := range conds {
				if err = f.AddRuleConditional(call, act, []libseccomp.ScmpCondition{c}); err != nil {
					break
				}
			}
		default:
			err = f.AddRuleConditional(call, act, conds)
		}
		if err != nil {
			return fmt.Errorf("seccomp rule for %s: %w", name, err)
		}
	}
	return nil
}
