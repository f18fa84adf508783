package containerinit

import (
	"fmt"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/seccomp/filter"
)

// SeccompFDEnv names the environment variable holding the fd of the
// container's compiled seccomp filter (SeccompFile), when its creator
// hands one down. Without it the init compiles the filter itself, which
// costs about 0.1 s for runtime/default.
const SeccompFDEnv = "_BERTH_SECCOMP_FD"

// programs caches compiled filters in the creating process (the pod's
// shim), so that its containers and execs with one profile share one
// compilation.
var programs filter.Cache

// SeccompFile is the compiled filter of p in a file for the init, which
// gets it as an inherited fd named by SeccompFDEnv; the caller closes it.
func SeccompFile(p *specs.LinuxSeccomp) (*os.File, error) {
	return programs.File(p)
}

// loadSeccomp loads the spec's seccomp filter at one of two points of
// finish, runc's order:
//
//   - beforeDrop (before setupProcess): when the process will not have
//     no_new_privs, the kernel accepts a filter only from a holder of
//     CAP_SYS_ADMIN, which the init still is here and the container's
//     process usually is not. The filter then also sees the init's
//     setgroups, setuid, capset and prctl calls.
//   - !beforeDrop (after setupProcess set no_new_privs, before "ready"):
//     as late as a load error can still fail the create, so that the
//     profile must allow little more than execve, read and write.
//
// Each call loads nothing when the other point is the right one.
func loadSeccomp(spec *specs.Spec, beforeDrop bool) error {
	if spec.Linux == nil || spec.Linux.Seccomp == nil || beforeDrop == spec.Process.NoNewPrivileges {
		return nil
	}
	prog, err := seccompProgram(spec.Linux.Seccomp)
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	if err := prog.Load(); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}

// seccompProgram reads the program handed down, or compiles p.
func seccompProgram(p *specs.LinuxSeccomp) (*filter.Program, error) {
	s := os.Getenv(SeccompFDEnv)
	if s == "" {
		return filter.Compile(p)
	}
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("bad %s %q", SeccompFDEnv, s)
	}
	// Closed here: the container's command must not inherit it.
	f := os.NewFile(uintptr(fd), "seccomp-program")
	defer f.Close()
	return filter.ReadProgram(f)
}
