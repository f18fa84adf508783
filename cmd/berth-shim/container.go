package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/crilog"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/shim"
)

// The container ops (see runtime/shim/container.go): the shim creates each
// container process, is its parent and reaper, copies its output into the
// CRI log and records how it ended.

func init() {
	handlers[shim.OpCreate] = handleCreate
	handlers[shim.OpStart] = handleStart
	handlers[shim.OpState] = handleState
	handlers[shim.OpKill] = handleKill
	handlers[shim.OpDelete] = handleDelete
	handlers[shim.OpReopenLog] = handleReopenLog
	shutdownHooks = append(shutdownHooks, stopContainers)
}

// initPath runs this very binary (its init role) even if the file on disk
// was replaced by an upgrade since the shim started.
const initPath = "/proc/self/exe"

// planFDMin is the lowest descriptor planPath's may take: exec.Cmd moves a
// child's ExtraFiles to 3, 4, ... before its execve, and one of them must
// not land on the descriptor the execve is about to run.
const planFDMin = 64

// planPath is berth-mon beside this binary, opened once (as the monitor's
// hand-off does, so that an upgrade of the files on disk does not mix
// versions): process.Exec starts it instead of berth-shim to finish an
// exec from a plan; its C start costs a fraction of berth-shim's (static,
// no dynamic loader). "" without berth-mon: berth-shim does it.
var planPath = sync.OnceValue(func() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	fd, err := unix.Open(filepath.Join(filepath.Dir(self), "berth-mon"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, planFDMin)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("/proc/self/fd/%d", high)
})

// drainTimeout bounds the wait for a container's output after its last
// process ended: a pipe end that leaked elsewhere must not hold the exit.
const drainTimeout = 2 * time.Second

// container is one container of the pod.
type container struct {
	id       string
	stateDir string
	// bundleDir holds config.json and the compiled seccomp program that
	// execs load too.
	bundleDir string
	spec      *specs.Spec
	proc      *process.Container
	log       *crilog.File // nil: output discarded
	// stdin is the write end of the process's stdin pipe (or the console
	// with a terminal), kept for attach.
	stdin   *os.File
	outputs []*os.File // read ends being copied
	copiers sync.WaitGroup
	// done is closed once the process was reaped and its exit recorded.
	done chan struct{}
	// startMu is held while the process is being released, so that the
	// exit record sees the final StartedAt.
	startMu sync.Mutex
	// deleteMu serialises deletes of the container.
	deleteMu sync.Mutex
	// handoff stops the output copiers for a demotion (demote.go).
	handoff atomic.Bool
	// execFiles keeps what its spawned execs join open while it runs;
	// closed at its exit (a demotion's exec closes them too: O_CLOEXEC).
	execFiles process.ExecFiles

	state shim.ContainerState // guarded by containers.mu

	// restore is set, and proc nil, until a container to be restored from
	// a checkpoint is (restore.go).
	restore *pendingRestore
}

// containers are the pod's containers by id. A nil value reserves an id
// whose create is under way.
var containers = struct {
	mu   sync.Mutex
	byID map[string]*container
	// closed refuses new creates once the shim shuts down; creating
	// counts those under way, which the shutdown waits for.
	closed   bool
	creating sync.WaitGroup
	// pending holds, per id being created, a channel closed when the
	// create ends, for a delete that comes meanwhile.
	pending map[string]chan struct{}
}{byID: map[string]*container{}, pending: map[string]chan struct{}{}}

func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return fmt.Errorf("missing arguments: %w", errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode arguments: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// containerArgs are the args of an op on one created container.
type containerArgs interface{ ContainerID() string }

// containerOf decodes the args of an op on a created container and finds
// that container.
func containerOf[A containerArgs](raw json.RawMessage) (A, *container, error) {
	var a A
	if err := decodeArgs(raw, &a); err != nil {
		return a, nil, err
	}
	c, err := lookup(a.ContainerID())
	return a, c, err
}

// lookup finds a created container.
func lookup(id string) (*container, error) {
	containers.mu.Lock()
	defer containers.mu.Unlock()
	c := containers.byID[id]
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (c *container) snapshot() shim.ContainerState {
	containers.mu.Lock()
	defer containers.mu.Unlock()
	return c.state
}

func validID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsAny(id, "/\x00") && id != "." && id != ".."
}
