package containerinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecPlanEnv, set to "1" in an exec's init, makes runtime/nsenter's C
// code finish the exec (execplan.c) from a plan (ExecPlan) sent as the
// first message on the sync socket instead of the spec: the Go runtime of
// the init never starts. The sync protocol after the plan is the same.
const ExecPlanEnv = "_BERTH_EXEC_PLAN"

// Flags of a plan; execplan.c has the same.
const (
	planUmask   = 1
	planNNP     = 2
	planOOM     = 4
	planSeccomp = 8
)

// ExecPlan encodes what finish applies to process p, which runs without a
// terminal, for execplan.c: capability masks (the names this build knows,
// as setupProcess), user and groups, umask, no_new_privs, OOM score,
// rlimits by number, working directory, args and env; seccomp says a
// compiled program is handed down (SeccompFDEnv). Little-endian: "berthx01",
// the body's length, the body.
func ExecPlan(p *specs.Process, seccomp bool) ([]byte, error) {
	if p == nil || len(p.Args) == 0 {
		return nil, errors.New("exec plan: no process args")
	}
	if p.Terminal {
		return nil, errors.New("exec plan: a terminal needs the Go init")
	}
	head, env, err := ExecPlanParts(p, seccomp)
	if err != nil {
		return nil, err
	}
	b, err := appendPlanStrings(head, p.Args)
	if err != nil {
		return nil, err
	}
	b = append(b, env...)
	out := append([]byte("berthx01"), binary.LittleEndian.AppendUint32(nil, uint32(len(b)))...)
	return append(out, b...), nil
}

// ExecPlanParts is the body of p's plan around its args: head is what
// comes before them (masks to working directory), env what comes after.
// berth-mon keeps the parts of a container's process and puts an exec's
// args between them (cmd/berth-mon/exec.c).
func ExecPlanParts(p *specs.Process, seccomp bool) (head, env []byte, err error) {
	if p == nil {
		return nil, nil, errors.New("exec plan: no process")
	}
	var masks [5]uint64 // bounding, effective, permitted, inheritable, ambient
	if c := p.Capabilities; c != nil {
		for i, names := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
			for _, n := range names {
				// A capability newer than this build is left out, as runc does.
				if v, ok := capByName[n]; ok && v <= capability.Cap(63) {
					masks[i] |= 1 << uint(v)
				}
			}
		}
	}
	var b []byte
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	u64 := func(v uint64) { b = binary.LittleEndian.AppendUint64(b, v) }
	for _, m := range masks {
		u64(m)
	}
	u := p.User
	u32(u.UID)
	u32(u.GID)
	var flags, umask uint32
	if u.Umask != nil {
		flags, umask = flags|planUmask, *u.Umask
	}
	if p.NoNewPrivileges {
		flags |= planNNP
	}
	var oom int32
	if p.OOMScoreAdj != nil {
		flags, oom = flags|planOOM, int32(*p.OOMScoreAdj)
	}
	if seccomp {
		flags |= planSeccomp
	}
	u32(flags)
	u32(umask)
	u32(uint32(oom))
	u32(uint32(len(u.AdditionalGids)))
	for _, g := range u.AdditionalGids {
		u32(g)
	}
	if len(p.Rlimits) > 64 {
		return nil, nil, fmt.Errorf("exec plan: %d rlimits", len(p.Rlimits))
	}
	u32(uint32(len(p.Rlimits)))
	for _, r := range p.Rlimits {
		res, ok := rlimitByName[r.Type]
		if !ok {
			return nil, nil, fmt.Errorf("unknown rlimit %q", r.Type)
		}
		u32(uint32(res))
		u64(r.Soft)
		u64(r.Hard)
	}
	if head, err = appendPlanString(b, p.Cwd); err != nil {
		return nil, nil, err
	}
	if env, err = appendPlanStrings(nil, p.Env); err != nil {
		return nil, nil, err
	}
	return head, env, nil
}

// appendPlanString appends s NUL-terminated.
func appendPlanString(b []byte, s string) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, fmt.Errorf("exec plan: %q holds a NUL", s)
	}
	return append(append(b, s...), 0), nil
}

// appendPlanStrings appends list as the plan has it: its length, then each
// string NUL-terminated.
func appendPlanStrings(b []byte, list []string) ([]byte, error) {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(list)))
	for _, s := range list {
		var err error
		if b, err = appendPlanString(b, s); err != nil {
			return nil, err
		}
	}
	return b, nil
}
