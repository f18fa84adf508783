package shim

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Container ops: berthd asks the pod's shim to create and control the pod's
// containers. The shim is the containers' parent: it reaps them, writes
// their CRI logs and records how they ended (ExitFile in the container's
// state dir, written temp-then-rename before the cgroup is removed), so that
// berthd, restarted, learns the exit of a container that ended meanwhile
// even when the shim itself is gone.
const (
	// OpCreate: CreateArgs → ContainerState. The process is set up and held
	// before execve until OpStart.
	OpCreate = "create"
	// OpStart: IDArgs → ContainerState.
	OpStart = "start"
	// OpState: IDArgs → ContainerState.
	OpState = "state"
	// OpKill: KillArgs → {}. Killing an exited container is not an error.
	OpKill = "kill"
	// OpDelete: IDArgs → {}. Kills the process if it still runs, waits for
	// it, removes the cgroup and forgets the container; idempotent (an
	// unknown id is not an error).
	OpDelete = "delete"
	// OpUpdate: UpdateArgs → {}. Changes the cgroup of a live container.
	// berth-shim does not serve it (it answers CodeUnimplemented): the
	// shim does not link containerd's cgroups library, so berthd, which
	// created the cgroup (runtime/cgroups), updates it directly.
	OpUpdate = "update"
	// OpReopenLog: IDArgs → {}. Reopens the log file after rotation.
	OpReopenLog = "reopen-log"
	// OpExecSync: ExecSyncArgs → ExecSyncResult. Runs a command inside the
	// container and waits for it (killed at the timeout). Served by shims
	// before OpExecSyncStream (see Client.ExecSync), which replaces it.
	OpExecSync = "exec-sync"
)

// ExitFile is the name, in a container's state dir, of the JSON ExitRecord.
const ExitFile = "exit.json"

// CreateArgs creates one container.
type CreateArgs struct {
	ID string `json:"id"`
	// BundleDir holds config.json (the OCI runtime spec) of the container.
	// The spec's cgroup (Linux.CgroupsPath) must exist: berthd creates it
	// with its resources; the shim puts the process in and removes the
	// cgroup at OpDelete (or shutdown), after recording the exit.
	BundleDir string `json:"bundleDir"`
	// StateDir is the container's volatile state dir, where the shim writes
	// ExitFile.
	StateDir string `json:"stateDir"`
	// LogPath is the CRI log file; empty: output is discarded. It must be
	// below LogDir, the pod's log directory (an existing directory, not a
	// symlink; empty: LogPath's own directory): from there down no symlink
	// is followed, and a file that is not a regular one of its own is
	// refused (package safefile).
	LogPath string `json:"logPath,omitempty"`
	LogDir  string `json:"logDir,omitempty"`
	// Stdin keeps a pipe to the process's stdin open for attach;
	// StdinOnce closes it after the first attach ends.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	// Tty gives the process a terminal (the spec says so too).
	Tty bool `json:"tty,omitempty"`
	// RestoreFrom, when set, is a checkpoint's CRIU images dir: the
	// create makes no process, and OpStart restores it with CRIU (the
	// criu binary berthd checked) instead of starting one.
	RestoreFrom string `json:"restoreFrom,omitempty"`
	CRIU        string `json:"criu,omitempty"`
}

// IDArgs names one container.
type IDArgs struct {
	ID string `json:"id"`
}

// KillArgs signals a container. All sends the signal to every process of
// the container's cgroup (SIGKILL to all when stopping for good).
type KillArgs struct {
	ID     string `json:"id"`
	Signal int    `json:"signal"`
	All    bool   `json:"all,omitempty"`
}

// Container statuses in ContainerState.Status.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// ContainerState is what the shim knows of one container.
type ContainerState struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	// StartedAt is zero until started; FinishedAt and the exit fields are
	// set once the process was reaped.
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	ExitCode   int       `json:"exitCode"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	// NodeHooksRan: the shim ran the prestart and createRuntime hooks at
	// the create (before the init's createContainer hooks); berthd runs
	// them otherwise.
	NodeHooksRan bool `json:"nodeHooksRan,omitempty"`
}

// ExitRecord is the content of ExitFile.
type ExitRecord struct {
	Pid        int       `json:"pid"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt"`
	ExitCode   int       `json:"exitCode"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
}

// UpdateArgs carries a live container's new resources.
type UpdateArgs struct {
	ID        string                `json:"id"`
	Resources *specs.LinuxResources `json:"resources"`
}

// ExecSyncArgs runs Cmd inside a container: its namespaces, cgroup, user,
// environment and working directory.
type ExecSyncArgs struct {
	ID      string        `json:"id"`
	Cmd     []string      `json:"cmd"`
	Timeout time.Duration `json:"timeout,omitempty"` // 0: no limit
	// MaxOutput bounds what OpExecSyncStream sends of each stream; 0: the
	// shim's own bound.
	MaxOutput int `json:"maxOutput,omitempty"`
}

// ExecSyncResult is the outcome of OpExecSync; a timeout kills the command
// and reports TimedOut.
type ExecSyncResult struct {
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
	ExitCode int    `json:"exitCode"`
	TimedOut bool   `json:"timedOut,omitempty"`
	// StdoutBytes and StderrBytes are what the command wrote in all
	// (Client.ExecSync): more than Stdout and Stderr when they were cut.
	StdoutBytes int64 `json:"-"`
	StderrBytes int64 `json:"-"`
}

// ContainerID names the container an op is on.
func (a IDArgs) ContainerID() string { return a.ID }

// ContainerID names the container an op is on.
func (a KillArgs) ContainerID() string { return a.ID }

// ContainerID names the container an op is on.
func (a ExecSyncArgs) ContainerID() string { return a.ID }

// OpCheckpoint: CheckpointArgs → {}. Dumps a running container's processes
// with CRIU into ImagesDir, leaving them running. The shim runs CRIU: it is
// the container's parent and knows its namespaces and mounts.
const OpCheckpoint = "checkpoint"

// CheckpointArgs checkpoints one container.
type CheckpointArgs struct {
	ID string `json:"id"`
	// CRIU is the criu binary berthd checked.
	CRIU string `json:"criu"`
	// ImagesDir receives CRIU's images, WorkDir its log (dump.log); both
	// exist.
	ImagesDir string        `json:"imagesDir"`
	WorkDir   string        `json:"workDir"`
	Timeout   time.Duration `json:"timeout,omitempty"` // 0: no limit
}

// ContainerID names the container an op is on.
func (a CheckpointArgs) ContainerID() string { return a.ID }
