package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/runtime/safefile"
)

// LaunchOptions describe one pod's shim.
type LaunchOptions struct {
	// Binary is the berth-shim executable.
	Binary string
	// PodID names the pod; StateDir is its state dir, where the shim puts
	// its socket.
	PodID    string
	StateDir string
	// LogPath receives the shim's stderr (appended); empty: /dev/null.
	LogPath string
	// Pause asks for a pause process as PID 1 of a new PID namespace, itself
	// in these namespaces (paths of pinned namespaces; empty: the node's).
	Pause *PauseOptions
	// Place is called with the shim's pid right after it started and before
	// it does anything (it waits for its readiness pipe to be read), e.g. to
	// move it into the pod's cgroup. An error kills the shim.
	Place func(pid int) error
	// Env is added to the shim's environment (memory tuning by default).
	Env []string
}

// PauseOptions are the namespaces the pause process joins.
type PauseOptions struct {
	UserNS, NetNS, IPCNS, UTSNS string
}

// DefaultEnv keeps the shim's heap small: it is one process per pod.
var DefaultEnv = []string{"GOGC=50", "GOMEMLIMIT=8MiB", "GOMAXPROCS=1", "GODEBUG=madvdontneed=1"}

// Launched is a shim that answers on its socket.
type Launched struct {
	Status
	// StartTime is the shim's start time in clock ticks since boot
	// (/proc/<pid>/stat field 22): with Pid it names the process even after
	// the pid is reused.
	StartTime uint64
}

// Launch starts the pod's shim in a new session, detached from berthd
// (stdio not inherited, not in berthd's process group), and returns once its
// control socket answers. The shim outlives berthd.
func Launch(ctx context.Context, o LaunchOptions) (*Launched, error) {
	args := []string{"serve", "--sync", "--id", o.PodID, "--state-dir", o.StateDir}
	if p := o.Pause; p != nil {
		args = append(args, "--pause", "--pause-netns", p.NetNS, "--pause-ipcns", p.IPCNS, "--pause-utsns", p.UTSNS)
		if p.UserNS != "" {
			args = append(args, "--pause-userns", p.UserNS)
		}
	}
	cmd := exec.Command(o.Binary, args...)
	cmd.Env = append(append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, DefaultEnv...), o.Env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logf, err := openLog(o.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// The readiness pipe: the shim reads a byte from "go" before starting
	// (so Place runs first) and writes "ok" or an error to "ready".
	goR, goW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		goR.Close()
		goW.Close()
		return nil, err
	}
	defer goW.Close()
	defer readyR.Close()
	cmd.ExtraFiles = []*os.File{goR, readyW}
	err = cmd.Start()
	goR.Close()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	pid := cmd.Process.Pid
	// berthd is the shim's parent until berthd exits: reap it.
	exited := reap(cmd)
	fail := func(err error) (*Launched, error) {
		// The group: the shim and the pause process it may have started.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
		return nil, err
	}
	start, err := StartTime(pid)
	if err != nil {
		return fail(fmt.Errorf("shim pid %d: %w", pid, err))
	}
	if o.Place != nil {
		if err := o.Place(pid); err != nil {
			return fail(err)
		}
	}
	if _, err := goW.Write([]byte{1}); err != nil {
		return fail(fmt.Errorf("release shim: %w", err))
	}
	goW.Close()

	msg := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(readyR); msg <- b }()
	select {
	case b := <-msg:
		if s := strings.TrimSpace(string(b)); s != "ok" {
			if s == "" {
				s = "exited before it was ready" + logTail(o.LogPath)
			}
			return fail(fmt.Errorf("shim of pod %s: %s", o.PodID, s))
		}
	case <-ctx.Done():
		return fail(fmt.Errorf("wait for shim of pod %s: %w", o.PodID, ctx.Err()))
	}
	st, err := Connect(o.StateDir).Status(ctx)
	if err != nil {
		return fail(err)
	}
	return &Launched{Status: st, StartTime: start}, nil
}

func openLog(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	// In the pod dir; a symlink there is not followed (safefile).
	d, err := safefile.OpenDir(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("open shim log: %w", err)
	}
	defer d.Close()
	f, _, err := d.CreateAppend(filepath.Base(path), 0o600)
	if err != nil {
		return nil, fmt.Errorf("open shim log: %w", err)
	}
	return f, nil
}

func logTail(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 512 {
		b = b[len(b)-512:]
	}
	return ": " + string(bytes.TrimSpace(b))
}

// StartTime reads a process's start time (clock ticks since boot).
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); start time is field 22.
	if len(f) < 20 {
		return 0, errors.New("short /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the process pid with the given start time still
// runs (a zombie counts as gone).
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && (startTime == 0 || st == startTime)
}

// WaitGone polls until the process is gone or the timeout passes.
func WaitGone(pid int, startTime uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for d := time.Millisecond; ; d = min(2*d, 50*time.Millisecond) {
		if !Alive(pid, startTime) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(d)
	}
}
