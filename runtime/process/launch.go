package process

import (
	"bytes"
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

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/containerinit"
	"github.com/berth-dev/berth/runtime/nsenter"
	"github.com/berth-dev/berth/runtime/seccomp/filter"
)

type launchOpts struct {
	initPath              string
	args                  []string // after "init"
	ns                    nsenter.Config
	stdin, stdout, stderr *os.File
	timeout               time.Duration
	nodeHooks             func(pid int) error
	// first is sent to the init before anything else: its spec
	// (initSpecJSON) or an exec plan (containerinit.ExecPlan).
	first []byte
	env   []string // added to the init's environment
	// seccomp is handed to the init compiled: read from the bundle's
	// filter.BundleFile (berthd compiled it) or else compiled here, once
	// per profile.
	seccomp *specs.LinuxSeccomp
	bundle  string
	// pidNS, if set, is the PID namespace the init is born in
	// (startInPIDNS); ns then must not join or create one.
	pidNS string
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
	env = append(append(env, "GOMAXPROCS=1", "GOGC=off"), o.env...)

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
		prog, err := seccompFile(o.bundle, o.seccomp)
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
	if o.pidNS != "" {
		err = startInPIDNS(cmd, o.pidNS)
	} else {
		err = cmd.Start()
	}
	childFile.Close()
	if err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = defaultReadyTimeout
	}
	_ = c.sync.SetDeadline(time.Now().Add(timeout))
	if o.first != nil {
		if _, err := c.sync.Write(o.first); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			// An init that failed before reading (nsenter) said why.
			if line, rerr := c.readMsg(); rerr == nil && strings.HasPrefix(line, containerinit.MsgError+" ") {
				return initError(line)
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
			return initError(line)
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
				return initError(line)
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
		case line == containerinit.MsgNodeHooks:
			if o.nodeHooks == nil {
				return errors.New("init asked for createRuntime hooks no one runs")
			}
			if err := o.nodeHooks(c.pid); err != nil {
				return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
			}
			if _, err := c.sync.Write([]byte(containerinit.MsgNodeHooksDone + "\n")); err != nil {
				return fmt.Errorf("createRuntime hooks done: %w", err)
			}
		case strings.HasPrefix(line, containerinit.MsgError+" "):
			return initError(line)
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

// seccompFile opens the program berthd compiled into the bundle, or, for a
// bundle without one (made by an older berthd, or a profile berthd could
// not compile), compiles p here.
func seccompFile(bundle string, p *specs.LinuxSeccomp) (*os.File, error) {
	if bundle != "" {
		f, err := os.Open(filepath.Join(bundle, filter.BundleFile))
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("seccomp program: %w", err)
		}
	}
	return containerinit.SeccompFile(p)
}

// defaultReadyTimeout bounds an init's setup when the caller names no bound.
const defaultReadyTimeout = 30 * time.Second

// initError is the error an init reported; a hook of the container's
// that failed is FailedPrecondition (the node is not as the hook needs it).
func initError(line string) error {
	msg := strings.TrimPrefix(line, containerinit.MsgError+" ")
	if containerinit.IsHookError(msg) {
		return fmt.Errorf("%s: %w", msg, errdefs.ErrFailedPrecondition)
	}
	return errors.New(msg)
}
