package nsenter

/*
#cgo CFLAGS: -Wall -Werror -std=gnu11
#include "spawn.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrSpawnUnsupported: this build or kernel cannot spawn (no clone3, or
// an architecture spawn.c has no entry for); the caller starts a helper.
var ErrSpawnUnsupported = errors.New("spawn: not supported here")

// PlanError is an exec plan the C code refused; nothing was started.
type PlanError struct{ Msg string }

func (e *PlanError) Error() string { return e.Msg }

// Spawn is what SpawnExec needs, all of it open already (descriptors).
type Spawn struct {
	// Join are namespace files in the order they are joined (JoinOrder);
	// Kinds are their kinds (User, IPC, ...).
	Join  []int
	Kinds []string
	// CgroupTasks are cgroup v1 "tasks" files the process writes "0" to;
	// CgroupDir, if not -1, is a cgroup v2 directory it is born in
	// (CLONE_INTO_CGROUP).
	CgroupTasks []int
	CgroupDir   int
	// Stdio are its stdin, stdout and stderr.
	Stdio [3]*os.File
	// Seccomp is the compiled seccomp program if the plan has one, else -1.
	Seccomp int
	// Plan is containerinit.ExecPlan's encoding.
	Plan []byte
}

// JoinOrder is the order nsenter.c joins namespaces in: the user namespace
// first (it grants the rights for the others), the mount namespace last.
var JoinOrder = []string{User, IPC, UTS, Net, PID, Cgroup, Mount}

var flags = map[string]int{
	User: unix.CLONE_NEWUSER, IPC: unix.CLONE_NEWIPC, UTS: unix.CLONE_NEWUTS, Net: unix.CLONE_NEWNET,
	PID: unix.CLONE_NEWPID, Cgroup: unix.CLONE_NEWCGROUP, Mount: unix.CLONE_NEWNS,
}

// CloneFlag is the CLONE_NEW* flag of a namespace kind, 0 for an unknown
// kind.
func CloneFlag(kind string) int { return flags[kind] }

var (
	// spawnMu: spawn.c keeps the plan being applied in static memory.
	spawnMu     sync.Mutex
	unsupported bool
	// notDumpable: a spawned process shares this process's memory until
	// its execve; without the dumpable flag, ptrace or /proc/<pid>/mem of
	// it takes CAP_SYS_PTRACE over the node.
	notDumpable = sync.OnceValue(func() error {
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("spawn: clear dumpable: %w", err)
		}
		return nil
	})
)

// ignoredSignals are the signals this process ignores (bit sig-1), as the
// Go runtime tracks them: inherited ignored at its start or ignored since
// with signal.Ignore. Every other signal has the runtime's handler.
func ignoredSignals() uint64 {
	var m uint64
	for sig := 1; sig <= 64; sig++ {
		if signal.Ignored(syscall.Signal(sig)) {
			m |= 1 << (sig - 1)
		}
	}
	return m
}

// SpawnExec starts a process that joins the namespaces and cgroup of s,
// applies its exec plan and executes the command, without an execve of a
// helper (see spawn.c), and returns its pid once it has executed the
// command or failed. A process born in a PID namespace is spawned from a
// thread whose children get it (as startInPIDNS sets). A failure of the
// process before its execve is the error; the process is then gone (or
// going), a child of ours for the caller's reaper.
func SpawnExec(s *Spawn) (int, error) {
	if len(s.Join) > C.SPAWN_MAX_NS || len(s.CgroupTasks) > C.SPAWN_MAX_CGROUP || len(s.Plan) == 0 {
		return 0, errors.New("spawn: too many namespaces or cgroups, or no plan")
	}
	if err := notDumpable(); err != nil {
		return 0, err
	}
	var cs C.struct_berth_spawn
	for i, fd := range s.Join {
		fl, ok := flags[s.Kinds[i]]
		if !ok || s.Kinds[i] == PID {
			return 0, fmt.Errorf("spawn: cannot join a %q namespace", s.Kinds[i])
		}
		cs.ns_fd[i], cs.ns_flag[i] = C.int(fd), C.int(fl)
	}
	cs.nns = C.int(len(s.Join))
	for i, fd := range s.CgroupTasks {
		cs.cgroup_tasks[i] = C.int(fd)
	}
	cs.ncgroup = C.int(len(s.CgroupTasks))
	cs.cgroup_dir, cs.seccomp_fd = C.int(s.CgroupDir), C.int(s.Seccomp)
	cs.ignored = C.ulonglong(ignoredSignals())
	for i, f := range s.Stdio {
		if f == nil {
			return 0, errors.New("spawn: stdin, stdout and stderr are needed")
		}
		cs.stdio[i] = C.int(f.Fd())
	}

	spawnMu.Lock()
	defer spawnMu.Unlock()
	if unsupported {
		return 0, ErrSpawnUnsupported
	}
	pid := C.berth_spawn_exec(&cs, (*C.uchar)(unsafe.Pointer(&s.Plan[0])), C.ulong(len(s.Plan)))
	runtime.KeepAlive(s)
	msg := C.GoString(&cs.err[0])
	switch {
	case cs.plan_error != 0:
		return 0, &PlanError{Msg: msg}
	case pid == -C.long(unix.ENOSYS):
		unsupported = true
		return 0, ErrSpawnUnsupported
	case pid < 0:
		return 0, fmt.Errorf("spawn: %w", syscall.Errno(-pid))
	case msg != "":
		return int(pid), &PlanError{Msg: msg}
	}
	return int(pid), nil
}
