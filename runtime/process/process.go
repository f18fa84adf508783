// Package process creates container processes: it starts "berth-shim init"
// in the container's namespaces (see runtime/nsenter), puts it into its
// cgroup, waits until the init reports ready (stopped before execve), and
// releases it on Start. The caller (the pod's shim, or a test) is the
// parent and reaper of the container process.
//
//	c, err := process.Create(process.CreateOpts{InitPath: shim, BundleDir: b})
//	// c.Pid() runs berth-shim init, set up, in the container's cgroup
//	err = c.Start()      // execve of the command; an exec error comes back here
//	st, err := c.Wait()  // or the caller's own reaper (wait4 of c.Pid())
//	oom := c.OOMKilled() // before Destroy
//	err = c.Destroy()    // kill everything in the cgroup, remove the cgroup
//
// The cgroup named by spec.Linux.CgroupsPath must exist: berthd creates it
// with the container's resources (runtime/cgroups) before the create.
package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/containerinit"
	"github.com/berth-dev/berth/runtime/nsenter"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CreateOpts describes one container process.
type CreateOpts struct {
	// InitPath is the berth-shim binary (its "init" role).
	InitPath string
	// BundleDir holds config.json, the spec the init reads.
	BundleDir string
	// Spec is the content of config.json; read from BundleDir when nil.
	Spec *specs.Spec
	// Stdio of the process; nil means /dev/null. Ignored for stdout and
	// stderr when the spec asks for a terminal (see Container.Console).
	Stdin, Stdout, Stderr *os.File
	// Timeout bounds the setup until "ready"; 0 means 30s.
	Timeout time.Duration
}

// Container is a created container process.
type Container struct {
	pid     int
	proc    *os.Process
	sync    *net.UnixConn
	pending []byte // read from sync, not yet consumed
	cg      *cgroupfs.Group
	exec    bool // an Exec: Destroy kills only this process
	// Console is the pty master when the spec asked for a terminal; the
	// caller owns it.
	Console *os.File
}

// ExitStatus is how the container's process ended.
type ExitStatus struct {
	Code     int // exit code, or 128+signal
	Signaled bool
	At       time.Time
}

// namespaceKinds maps the spec's namespace types to nsenter's kinds.
var namespaceKinds = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace: nsenter.PID, specs.NetworkNamespace: nsenter.Net,
	specs.MountNamespace: nsenter.Mount, specs.IPCNamespace: nsenter.IPC,
	specs.UTSNamespace: nsenter.UTS, specs.CgroupNamespace: nsenter.Cgroup,
	specs.UserNamespace: nsenter.User,
}

func nsConfig(spec *specs.Spec) (nsenter.Config, error) {
	c := nsenter.Config{Join: map[string]string{}, SyncFD: 3}
	newMount := false
	for _, ns := range spec.Linux.Namespaces {
		kind, ok := namespaceKinds[ns.Type]
		if !ok {
			return c, fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		if ns.Type == specs.UserNamespace && ns.Path == "" {
			// Its maps would have to be written from outside while the
			// new process waits; pods make theirs (package userns).
			return c, errors.New("a container joins its pod's user namespace, it does not make one")
		}
		if ns.Type == specs.MountNamespace {
			if ns.Path != "" {
				return c, errors.New("a container needs a new mount namespace, not a path")
			}
			newMount = true
		}
		if ns.Path != "" {
			c.Join[kind] = ns.Path
		} else {
			c.New = append(c.New, kind)
		}
	}
	if !newMount {
		return c, errors.New("a container needs a new mount namespace")
	}
	return c, nil
}

// ExecOpts describes a process run inside a running container.
type ExecOpts struct {
	InitPath string
	// Pid is the container's init (Container.Pid): the process joins all
	// its namespaces.
	Pid int
	// Spec is the container's spec; Process replaces its process (args,
	// env, cwd, user, capabilities, terminal). The process joins the
	// spec's cgroup.
	Spec                  *specs.Spec
	Process               *specs.Process
	Stdin, Stdout, Stderr *os.File
	Timeout               time.Duration
}

// Exec starts a process in a running container, held before execve like a
// created container: Start releases it, Wait reaps it, Destroy kills it
// (and only it).
func Exec(o ExecOpts) (*Container, error) {
	if o.Spec == nil || o.Process == nil || len(o.Process.Args) == 0 {
		return nil, errors.New("exec needs the container's spec and a process with args")
	}
	s := *o.Spec
	s.Process = o.Process
	data, err := initSpecJSON(&s)
	if err != nil {
		return nil, err
	}
	// The network, IPC, UTS and PID namespaces are always joined, even
	// one that looks like ours: /proc/self/ns shows the main thread's, and
	// the process is forked from whichever thread runs this. The mount,
	// cgroup and user namespaces are process-wide (no thread of ours ever
	// changes them) and can be compared.
	nsc := nsenter.Config{Join: map[string]string{}}
	for _, kind := range []string{nsenter.IPC, nsenter.UTS, nsenter.Net, nsenter.PID, nsenter.Mount} {
		nsc.Join[kind] = fmt.Sprintf("/proc/%d/ns/%s", o.Pid, kind)
	}
	// A container that shares our cgroup namespace (cgroup v1) does not
	// join it: from a user namespace it could not (it is the node's).
	cgroupNS := fmt.Sprintf("/proc/%d/ns/%s", o.Pid, nsenter.Cgroup)
	if same, err := sameNamespace(cgroupNS, "/proc/self/ns/"+nsenter.Cgroup); err != nil {
		return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
	} else if !same {
		nsc.Join[nsenter.Cgroup] = cgroupNS
	}
	// Joining our own user namespace would fail (EINVAL).
	userNS := fmt.Sprintf("/proc/%d/ns/%s", o.Pid, nsenter.User)
	if same, err := sameNamespace(userNS, "/proc/self/ns/"+nsenter.User); err != nil {
		return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
	} else if !same {
		nsc.Join[nsenter.User] = userNS
	}
	same, err := sameNamespace(nsc.Join[nsenter.Mount], "/proc/self/ns/"+nsenter.Mount)
	if err != nil {
		return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
	}
	if same {
		return nil, fmt.Errorf("exec in container %d: it shares the caller's mount namespace", o.Pid)
	}
	c := &Container{exec: true}
	if c.cg, err = openCgroup(&s); err != nil {
		return nil, err
	}
	err = c.launch(launchOpts{
		initPath: o.InitPath, args: []string{containerinit.ExecFlag}, ns: nsc,
		stdin: o.Stdin, stdout: o.Stdout, stderr: o.Stderr, timeout: o.Timeout,
		first: data, seccomp: s.Linux.Seccomp,
	})
	if err != nil {
		return nil, fmt.Errorf("exec in container %d: %w", o.Pid, err)
	}
	return c, nil
}

// initSpecJSON is the spec as the init is sent it, one line: without what
// only the shim uses (the seccomp profile, compiled here and handed down as
// a program: decoding the runtime/default profile in every new init took
// half a millisecond; the resources, set by berthd), with an empty seccomp
// section that tells the init to load the program.
func initSpecJSON(spec *specs.Spec) ([]byte, error) {
	s := *spec
	if spec.Linux != nil {
		l := *spec.Linux
		if l.Seccomp != nil {
			l.Seccomp = &specs.LinuxSeccomp{}
		}
		l.Resources = nil
		s.Linux = &l
	}
	data, err := json.Marshal(&s)
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func sameNamespace(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, err
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// openCgroup names the spec's cgroup, which must exist: berthd creates it
// with its resources (runtime/cgroups) before the create, and the init binds
// its dirs into the container's /sys/fs/cgroup.
func openCgroup(spec *specs.Spec) (*cgroupfs.Group, error) {
	if spec.Linux.CgroupsPath == "" {
		return nil, nil
	}
	g, err := cgroupfs.Open(spec.Linux.CgroupsPath)
	if err != nil {
		return nil, err
	}
	if !g.Exists() {
		return nil, fmt.Errorf("cgroup %s does not exist", spec.Linux.CgroupsPath)
	}
	return g, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Create starts the container's init and returns once it is ready to exec
// the command (or failed: then nothing is left behind).
func Create(o CreateOpts) (*Container, error) {
	spec := o.Spec
	if spec == nil {
		var err error
		if spec, err = readSpec(o.BundleDir); err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
	}
	if spec.Linux == nil || spec.Process == nil {
		return nil, errors.New("spec has no linux or process section")
	}
	nsc, err := nsConfig(spec)
	if err != nil {
		return nil, err
	}
	c := &Container{}
	if c.cg, err = openCgroup(spec); err != nil {
		return nil, err
	}
	// Sent on the sync socket: smaller than config.json, and the root of
	// a user namespace could not read that file (0600, the node's root's).
	data, err := initSpecJSON(spec)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	sources, index, err := containerinit.MountSources(spec)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	defer func() {
		for _, f := range sources {
			f.Close()
		}
	}()
	err = c.launch(launchOpts{
		initPath: o.InitPath, args: []string{o.BundleDir}, ns: nsc,
		stdin: o.Stdin, stdout: o.Stdout, stderr: o.Stderr, timeout: o.Timeout,
		seccomp: spec.Linux.Seccomp, sources: sources, sourceIndex: index,
		first: data,
	})
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	return c, nil
}

type launchOpts struct {
	initPath              string
	args                  []string // after "init"
	ns                    nsenter.Config
	stdin, stdout, stderr *os.File
	timeout               time.Duration
	// first is sent to the init before anything else: its spec
	// (initSpecJSON).
	first []byte
	// seccomp is compiled here, once per profile, and handed to the init.
	seccomp *specs.LinuxSeccomp
	// sources are opened mount sources for the spec's mounts at
	// sourceIndex (containerinit.MountSources).
	sources     []*os.File
	sourceIndex []int
}

// launch starts berth-shim init, learns its pid, puts it into c.cg and
// waits for "ready". On failure it kills what it started.
func (c *Container) launch(o launchOpts) (retErr error) {
	defer func() {
		if retErr != nil {
			c.abort()
		}
	}()
	o.ns.SyncFD = 3
	if c.cg != nil {
		// On cgroup v1 the init moves itself, before Go starts: far
		// cheaper than AddProc (see cgroupfs.Group.TaskFiles).
		o.ns.CgroupTasks = c.cg.TaskFiles()
	}
	env, err := o.ns.Env()
	if err != nil {
		return err
	}
	// The init is short-lived: a small runtime starts faster.
	env = append(env, "GOMAXPROCS=1", "GOGC=off")

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync socket: %w", err)
	}
	parentFile := os.NewFile(uintptr(fds[0]), "sync")
	childFile := os.NewFile(uintptr(fds[1]), "sync-child")
	conn, err := net.FileConn(parentFile)
	parentFile.Close()
	if err != nil {
		childFile.Close()
		return fmt.Errorf("sync socket: %w", err)
	}
	c.sync = conn.(*net.UnixConn)

	cmd := &exec.Cmd{
		Path:       o.initPath,
		Args:       append([]string{"berth-shim", "init"}, o.args...),
		Env:        env,
		ExtraFiles: []*os.File{childFile},
	}
	if o.seccomp != nil {
		prog, err := containerinit.SeccompFile(o.seccomp)
		if err != nil {
			childFile.Close()
			return err
		}
		defer prog.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, prog)
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", containerinit.SeccompFDEnv, 2+len(cmd.ExtraFiles)))
	}
	if len(o.sources) > 0 {
		var list []string
		for i, f := range o.sources {
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
			list = append(list, fmt.Sprintf("%d:%d", o.sourceIndex[i], 2+len(cmd.ExtraFiles)))
		}
		cmd.Env = append(cmd.Env, containerinit.MountFDsEnv+"="+strings.Join(list, ","))
	}
	// A nil *os.File in an interface is not nil for exec.Cmd.
	if o.stdin != nil {
		cmd.Stdin = o.stdin
	}
	if o.stdout != nil {
		cmd.Stdout = o.stdout
	}
	if o.stderr != nil {
		cmd.Stderr = o.stderr
	}
	if c.cg != nil {
		// On cgroup v2 the init is born in the container's cgroup, so
		// that a cgroup namespace it creates is rooted there.
		dir, err := c.cg.UnifiedDir()
		if err != nil {
			childFile.Close()
			return err
		}
		if dir != nil {
			defer dir.Close()
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
		}
	}
	err = cmd.Start()
	childFile.Close()
	if err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	_ = c.sync.SetDeadline(time.Now().Add(timeout))
	if o.first != nil {
		if _, err := c.sync.Write(o.first); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			// An init that failed before reading (nsenter) said why.
			if line, rerr := c.readMsg(); rerr == nil && strings.HasPrefix(line, containerinit.MsgError+" ") {
				return errors.New(strings.TrimPrefix(line, containerinit.MsgError+" "))
			}
			return fmt.Errorf("send to init: %w", err)
		}
	}

	if o.ns.Forks() {
		// The started process only enters the PID namespace and reports
		// its child (ours, by CLONE_PARENT), the real init.
		line, rerr := c.readMsg()
		werr := cmd.Wait()
		if rerr != nil {
			return fmt.Errorf("init did not report its pid: %v (%v)", rerr, werr)
		}
		pidStr, ok := strings.CutPrefix(line, "pid ")
		if !ok {
			return errors.New(strings.TrimPrefix(line, containerinit.MsgError+" "))
		}
		if c.pid, err = strconv.Atoi(pidStr); err != nil {
			return fmt.Errorf("init reported a bad pid %q", pidStr)
		}
		if c.proc, err = os.FindProcess(c.pid); err != nil {
			return err
		}
	} else {
		c.pid, c.proc = cmd.Process.Pid, cmd.Process
	}
	if c.cg != nil && len(o.ns.CgroupTasks) == 0 {
		if err := c.cg.AddProc(c.pid); err != nil {
			// An init that failed early (no such command, bad mount) may be
			// gone before it was placed: its report says why.
			if line, rerr := c.readMsg(); rerr == nil && strings.HasPrefix(line, containerinit.MsgError+" ") {
				return errors.New(strings.TrimPrefix(line, containerinit.MsgError+" "))
			}
			return err
		}
	}

	for {
		line, err := c.readMsg()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("init exited before it was ready")
			}
			return err
		}
		switch {
		case line == containerinit.MsgReady:
			_ = c.sync.SetDeadline(time.Time{})
			return nil
		case line == containerinit.MsgConsole:
			// readMsg took the pty master.
		case strings.HasPrefix(line, containerinit.MsgError+" "):
			return errors.New(strings.TrimPrefix(line, containerinit.MsgError+" "))
		default:
			return fmt.Errorf("unexpected message %q from init", line)
		}
	}
}

// readMsg reads one line. Every read is a recvmsg so that the pty master
// sent with the console message is never dropped.
func (c *Container) readMsg() (string, error) {
	for {
		if i := bytes.IndexByte(c.pending, '\n'); i >= 0 {
			line := string(c.pending[:i])
			c.pending = c.pending[i+1:]
			return strings.TrimSpace(line), nil
		}
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := c.sync.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for _, m := range msgs {
					fds, _ := unix.ParseUnixRights(&m)
					for _, fd := range fds {
						unix.CloseOnExec(fd)
						if c.Console == nil {
							c.Console = os.NewFile(uintptr(fd), "console")
						} else {
							unix.Close(fd)
						}
					}
				}
			}
		}
		if n == 0 && err == nil {
			err = io.EOF
		}
		if err != nil {
			if len(c.pending) > 0 {
				line := string(c.pending)
				c.pending = nil
				return strings.TrimSpace(line), nil
			}
			return "", err
		}
		c.pending = append(c.pending, buf[:n]...)
	}
}

// abort kills what Create started.
func (c *Container) abort() {
	if c.proc != nil {
		_ = c.proc.Kill()
		_, _ = c.proc.Wait()
	}
	if c.Console != nil {
		c.Console.Close()
		c.Console = nil
	}
	if c.sync != nil {
		c.sync.Close()
		c.sync = nil
	}
}

// Pid is the container's init process in the caller's PID namespace.
func (c *Container) Pid() int { return c.pid }

// Cgroup is the container's cgroup (nil if the spec has none).
func (c *Container) Cgroup() *cgroupfs.Group { return c.cg }

// Start lets the process exec its command and reports whether the exec
// succeeded.
func (c *Container) Start() error {
	if c.sync == nil {
		return errors.New("container already started")
	}
	defer func() { c.sync.Close(); c.sync = nil }()
	if _, err := c.sync.Write([]byte(containerinit.MsgStart + "\n")); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	line, err := c.readMsg()
	if errors.Is(err, io.EOF) {
		// The socket closed on exec.
		return nil
	}
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	return fmt.Errorf("start container: %s", strings.TrimPrefix(line, containerinit.MsgError+" "))
}

// Signal sends sig to the container's init.
func (c *Container) Signal(sig syscall.Signal) error {
	if err := c.proc.Signal(sig); err != nil {
		return fmt.Errorf("signal %d: %w", c.pid, err)
	}
	return nil
}

// Wait reaps the container's init.
func (c *Container) Wait() (ExitStatus, error) {
	ps, err := c.proc.Wait()
	if err != nil {
		return ExitStatus{}, fmt.Errorf("wait %d: %w", c.pid, err)
	}
	return exitStatus(ps), nil
}

func exitStatus(ps *os.ProcessState) ExitStatus {
	st := ExitStatus{At: time.Now(), Code: ps.ExitCode()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Signaled = true
		st.Code = 128 + int(ws.Signal())
	}
	return st
}

// OOMKilled reports whether the kernel's OOM killer killed a process of the
// container; call it before Destroy.
func (c *Container) OOMKilled() bool {
	if c.cg == nil {
		return false
	}
	n, err := c.cg.OOMKills()
	return err == nil && n > 0
}

// Destroy kills the container: every process of its cgroup, which it
// then removes (read OOMKilled before), or only its own process for an
// Exec or a container without cgroup. It does not reap the init: call
// Wait. Calling it again is harmless.
func (c *Container) Destroy() error {
	if c.sync != nil {
		c.sync.Close()
		c.sync = nil
	}
	if c.exec || c.cg == nil {
		if err := c.proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill %d: %w", c.pid, err)
		}
		return nil
	}
	if err := c.cg.KillAll(); err != nil {
		return err
	}
	// Killed processes leave the cgroup once reaped.
	return c.cg.Remove(2 * time.Second)
}
