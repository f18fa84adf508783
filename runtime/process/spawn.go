package process

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/containerinit"
	"github.com/berth-dev/berth/runtime/nsenter"
)

// errNoSpawn: the process could not be spawned and nothing was started;
// the caller starts the helper instead.
var errNoSpawn = errors.New("no spawn")

// spawnSafe reports whether an exec in the container may be spawned from
// the caller (nsenter.SpawnExec): until its execve that process shares the
// caller's memory, which is not dumpable, so ptrace or /proc/<pid>/mem of
// it takes CAP_SYS_PTRACE in the node's user namespace. No process that
// can see it may have that: a container in a user namespace of its own
// cannot; one without must not have CAP_SYS_PTRACE in its bounding set and
// must have a PID namespace of its own (a pod's shared one, or the node's,
// holds other containers' processes).
func spawnSafe(s *specs.Spec) bool {
	if s.Linux == nil || s.Process == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return true
		}
	}
	if c := s.Process.Capabilities; c == nil || slices.Contains(c.Bounding, "CAP_SYS_PTRACE") {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// spawnFiles are what a spawned exec joins, open: its namespaces (the PID
// namespace apart: it is born in it), its cgroup (v1 tasks files or the
// v2 dir) and its seccomp program.
type spawnFiles struct {
	sp        nsenter.Spawn // Join, Kinds, CgroupTasks, CgroupDir, Seccomp
	pidNS     int
	pidNSPath string
	fds       []int // all of the above
}

func (f *spawnFiles) close() {
	for _, fd := range f.fds {
		unix.Close(fd)
	}
	f.fds = nil
}

// openSpawnFiles opens them in the caller's mount namespace; on failure
// nothing stays open.
func openSpawnFiles(o ExecOpts, s *specs.Spec, cg *cgroupfs.Group, nsc nsenter.Config, pidNS string) (f *spawnFiles, err error) {
	f = &spawnFiles{sp: nsenter.Spawn{CgroupDir: -1, Seccomp: -1}, pidNSPath: pidNS}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	open := func(path string, flag int) (int, error) {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		f.fds = append(f.fds, fd)
		return fd, nil
	}
	for _, kind := range nsenter.JoinOrder {
		path, ok := nsc.Join[kind]
		if !ok {
			continue
		}
		fd, err := open(path, unix.O_RDONLY)
		if err != nil {
			return nil, fmt.Errorf("open %s namespace: %w", kind, err)
		}
		f.sp.Join, f.sp.Kinds = append(f.sp.Join, fd), append(f.sp.Kinds, kind)
	}
	if f.pidNS, err = open(pidNS, unix.O_RDONLY); err != nil {
		return nil, fmt.Errorf("open PID namespace: %w", err)
	}
	if cg != nil {
		// As nsenter.c: a hierarchy without the cgroup is skipped.
		for _, path := range cg.TaskFiles() {
			fd, err := open(path, unix.O_WRONLY)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("join cgroup: %w", err)
			}
			f.sp.CgroupTasks = append(f.sp.CgroupTasks, fd)
		}
		dir, err := cg.UnifiedDir()
		if err != nil {
			return nil, err
		}
		if dir != nil {
			if f.sp.CgroupDir, err = f.keep(dir); err != nil {
				return nil, fmt.Errorf("open cgroup: %w", err)
			}
		}
		if len(f.sp.CgroupTasks) == 0 && f.sp.CgroupDir < 0 {
			return nil, errors.New("join cgroup: no hierarchy has it")
		}
	}
	if s.Linux.Seccomp != nil {
		prog, err := seccompFile(o.BundleDir, s.Linux.Seccomp)
		if err != nil {
			return nil, err
		}
		if f.sp.Seccomp, err = f.keep(prog); err != nil {
			return nil, fmt.Errorf("seccomp program: %w", err)
		}
	}
	return f, nil
}

// keep takes file over as a plain descriptor of f's (an os.File's may be
// the poller's, and its finalizer would close it).
func (f *spawnFiles) keep(file *os.File) (int, error) {
	defer file.Close()
	fd, err := unix.FcntlInt(file.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	f.fds = append(f.fds, fd)
	return fd, nil
}

// ExecFiles keeps open, from one spawned exec into a running container to
// the next, the files they join (its namespaces, cgroup and seccomp
// program): an exec probe would otherwise open and close some twenty
// files in /proc and the cgroup hierarchies each time, on the way to its
// command. They are kept for one init (ExecOpts.Pid): held open, they
// name that container's namespaces and cgroup even if its pid is reused.
// Close them once the init has exited; the zero value is ready.
type ExecFiles struct {
	mu     sync.Mutex
	pid    int
	files  *spawnFiles
	closed bool
}

// acquire returns the files for the init pid, opened by open unless kept
// already, and holds them until release. Without f, or once f is closed,
// they are opened for this exec alone.
func (f *ExecFiles) acquire(pid int, open func() (*spawnFiles, error)) (*spawnFiles, func(), error) {
	if f != nil {
		f.mu.Lock()
		if !f.closed {
			if f.files == nil || f.pid != pid {
				f.dropLocked()
				files, err := open()
				if err != nil {
					f.mu.Unlock()
					return nil, nil, err
				}
				f.files, f.pid = files, pid
			}
			return f.files, f.mu.Unlock, nil
		}
		f.mu.Unlock()
	}
	files, err := open()
	if err != nil {
		return nil, nil, err
	}
	return files, files.close, nil
}

// Close closes the kept files, waiting for an exec that holds them; later
// execs keep nothing.
func (f *ExecFiles) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.dropLocked()
}

func (f *ExecFiles) dropLocked() {
	if f.files != nil {
		f.files.close()
		f.files = nil
	}
}

// ExecShare is what another process of ours needs to spawn an exec into
// a running container as Exec would (berth-mon, which an idle shim
// becomes, serves ExecSync with it): the descriptors an ExecFiles keeps
// for the container and its process's plan without the args. The
// descriptors stay the ExecFiles'.
type ExecShare struct {
	Join        []int // namespace files, in nsenter.JoinOrder
	JoinFlags   []int // their CLONE_NEW* flags
	PIDNS       int   // born in, not joined
	CgroupTasks []int // cgroup v1 tasks files
	CgroupDir   int   // cgroup v2 dir, or -1
	Seccomp     int   // compiled program, or -1
	// PlanHead and PlanEnv: containerinit.ExecPlanParts of the process.
	PlanHead, PlanEnv []byte
}

// ErrNotShared: an exec into this container is not spawned (spawnSafe),
// so there is nothing to share.
var ErrNotShared = errors.New("exec not spawned in this container")

// ShareExec opens what an exec of o.Process into the container joins, or
// takes what o.Files keeps already, and returns it with the process's
// plan parts; the files stay open in o.Files until its Close.
func ShareExec(o ExecOpts) (*ExecShare, error) {
	if o.Spec == nil || o.Process == nil || o.Files == nil || o.Process.Terminal {
		return nil, errors.New("share exec: the container's spec, a process without a terminal and its ExecFiles are needed")
	}
	s := *o.Spec
	s.Process = o.Process
	if !spawnSafe(&s) {
		return nil, ErrNotShared
	}
	head, env, err := containerinit.ExecPlanParts(o.Process, s.Linux.Seccomp != nil)
	if err != nil {
		return nil, err
	}
	files, release, err := o.Files.acquire(o.Pid, spawnOpener(o, &s))
	if err != nil {
		return nil, err
	}
	defer release()
	if o.Files.files != files {
		// Closed already: these are opened for this call alone.
		return nil, ErrNotShared
	}
	sh := &ExecShare{PIDNS: files.pidNS, CgroupTasks: slices.Clone(files.sp.CgroupTasks),
		CgroupDir: files.sp.CgroupDir, Seccomp: files.sp.Seccomp, PlanHead: head, PlanEnv: env}
	for i, fd := range files.sp.Join {
		sh.Join = append(sh.Join, fd)
		sh.JoinFlags = append(sh.JoinFlags, nsenter.CloneFlag(files.sp.Kinds[i]))
	}
	return sh, nil
}

// devNull is the stdin (or other stream) of an exec that has none; open
// for the process's life.
var devNull = sync.OnceValues(func() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_RDWR, 0) })

// spawn starts the exec's process with nsenter.SpawnExec: the files it
// needs are opened by open, in the caller's mount namespace, or taken
// from o.Files.
func (c *Container) spawn(o ExecOpts, plan []byte, open func() (*spawnFiles, error)) error {
	files, release, err := o.Files.acquire(o.Pid, open)
	if err != nil {
		return err
	}
	defer release()
	sp := files.sp
	sp.Plan = plan
	for i, f := range []*os.File{o.Stdin, o.Stdout, o.Stderr} {
		if f == nil {
			null, err := devNull()
			if err != nil {
				return err
			}
			f = null
		}
		sp.Stdio[i] = f
	}
	var pid int
	err = inPIDNSFile(files.pidNS, files.pidNSPath, func() (err error) {
		pid, err = nsenter.SpawnExec(&sp)
		return err
	})
	if pid > 0 {
		// Started, even if it failed before its execve: the caller's
		// reaper has it.
		c.pid, c.spawned = pid, true
		c.proc, _ = os.FindProcess(pid)
		if err != nil {
			// Gone or going (it failed before its execve); whoever
			// reaps first has it.
			_, _ = c.proc.Wait()
		}
	}
	var pe *nsenter.PlanError
	switch {
	case errors.As(err, &pe):
		return initError(containerinit.MsgError + " " + pe.Msg)
	case err != nil && pid == 0:
		klog.V(2).InfoS("Exec not spawned, starting the helper", "pid", o.Pid, "err", err)
		return fmt.Errorf("%w: %w", errNoSpawn, err)
	}
	return err
}
