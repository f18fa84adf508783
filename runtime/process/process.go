// Package process creates container processes: it starts "berth-shim init"
// in the container's namespaces (see runtime/nsenter), puts it into its
// cgroup, waits until the init reports ready (stopped before execve), and
// releases it on Start. The caller (the pod's shim, or a test) is the
// parent and reaper of the container process.
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

	"github.com/berth-dev/berth/runtime/cgroups"
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
	// Cgroup, when set, receives the process; otherwise the cgroup at
	// spec.Linux.CgroupsPath is created with spec.Linux.Resources (and
	// removed by Container.Destroy).
	Cgroup *cgroups.Cgroup
	// Timeout bounds the setup until "ready"; 0 means 30s.
	Timeout time.Duration
}

// Container is a created container process.
type Container struct {
	pid       int
	proc      *os.Process
	sync      *net.UnixConn
	pending   []byte // read from sync, not yet consumed
	cg        *cgroups.Cgroup
	ownCgroup bool
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
		if ns.Type == specs.UserNamespace {
			return c, errors.New("user namespaces are not supported yet")
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
func Create(o CreateOpts) (_ *Container, retErr error) {
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
	env, err := nsc.Env()
	if err != nil {
		return nil, err
	}
	// The init is short-lived: a small runtime starts faster.
	env = append(env, "GOMAXPROCS=1", "GOGC=off")

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	parentFile := os.NewFile(uintptr(fds[0]), "sync")
	childFile := os.NewFile(uintptr(fds[1]), "sync-child")
	conn, err := net.FileConn(parentFile)
	parentFile.Close()
	if err != nil {
		childFile.Close()
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	c := &Container{sync: conn.(*net.UnixConn)}
	defer func() {
		if retErr != nil {
			c.abort()
		}
	}()

	// The cgroup exists before the init starts: the init binds its dirs
	// into the container's /sys/fs/cgroup.
	c.cg = o.Cgroup
	if c.cg == nil && spec.Linux.CgroupsPath != "" {
		if c.cg, err = cgroups.Create(spec.Linux.CgroupsPath, spec.Linux.Resources); err != nil {
			return nil, err
		}
		c.ownCgroup = true
	}

	cmd := &exec.Cmd{
		Path:       o.InitPath,
		Args:       []string{"berth-shim", "init", o.BundleDir},
		Env:        env,
		Stdin:      o.Stdin,
		Stdout:     o.Stdout,
		Stderr:     o.Stderr,
		ExtraFiles: []*os.File{childFile},
	}
	// A nil *os.File in an interface is not nil for exec.Cmd.
	if o.Stdin == nil {
		cmd.Stdin = nil
	}
	if o.Stdout == nil {
		cmd.Stdout = nil
	}
	if o.Stderr == nil {
		cmd.Stderr = nil
	}
	err = cmd.Start()
	childFile.Close()
	if err != nil {
		return nil, fmt.Errorf("start init: %w", err)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	_ = c.sync.SetReadDeadline(time.Now().Add(timeout))

	if nsc.Forks() {
		// The started process only enters the PID namespace and reports
		// its child (ours, by CLONE_PARENT), the real init.
		line, rerr := c.readMsg()
		werr := cmd.Wait()
		if rerr != nil {
			return nil, fmt.Errorf("init did not report its pid: %v (%v)", rerr, werr)
		}
		pidStr, ok := strings.CutPrefix(line, "pid ")
		if !ok {
			return nil, fmt.Errorf("create container: %s", strings.TrimPrefix(line, containerinit.MsgError+" "))
		}
		if c.pid, err = strconv.Atoi(pidStr); err != nil {
			return nil, fmt.Errorf("init reported a bad pid %q", pidStr)
		}
		if c.proc, err = os.FindProcess(c.pid); err != nil {
			return nil, err
		}
	} else {
		c.pid, c.proc = cmd.Process.Pid, cmd.Process
	}

	if c.cg != nil {
		if err := c.cg.AddProc(c.pid); err != nil {
			return nil, err
		}
	}

	for {
		line, err := c.readMsg()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("init exited before it was ready")
			}
			return nil, fmt.Errorf("create container: %w", err)
		}
		switch {
		case line == containerinit.MsgReady:
			_ = c.sync.SetReadDeadline(time.Time{})
			return c, nil
		case line == containerinit.MsgConsole:
			// handled in readMsg
		case strings.HasPrefix(line, containerinit.MsgError+" "):
			return nil, fmt.Errorf("create container: %s", strings.TrimPrefix(line, containerinit.MsgError+" "))
		default:
			return nil, fmt.Errorf("create container: unexpected message %q from init", line)
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
	if c.ownCgroup && c.cg != nil {
		_ = c.cg.KillAll()
		_ = c.cg.Delete()
	}
	if c.Console != nil {
		c.Console.Close()
	}
	c.sync.Close()
}

// Pid is the container's init process in the caller's PID namespace.
func (c *Container) Pid() int { return c.pid }

// Cgroup is the container's cgroup (nil if none was asked for).
func (c *Container) Cgroup() *cgroups.Cgroup { return c.cg }

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

// Destroy kills every process of the container and, if Create made the
// cgroup, removes it. The caller must have reaped the init (Wait) or let
// Destroy do it by passing reap.
func (c *Container) Destroy() error {
	if c.sync != nil {
		c.sync.Close()
		c.sync = nil
	}
	if c.cg == nil {
		_ = c.proc.Kill()
		return nil
	}
	if err := c.cg.KillAll(); err != nil {
		return err
	}
	if !c.ownCgroup {
		return nil
	}
	// Killed processes leave the cgroup once reaped; give them a moment.
	var err error
	for i := 0; i < 200; i++ {
		if err = c.cg.Delete(); err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return err
}
