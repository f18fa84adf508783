package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/shim"
)

// The streaming ops (see runtime/shim/stream.go): an interactive exec, and
// attach to a container's main process, relayed as frames on the control
// connection.

func init() {
	streamHandlers[shim.OpExec] = handleExec
	streamHandlers[shim.OpAttach] = handleAttach
}

func handleExec(s *server, conn net.Conn, raw json.RawMessage) error {
	x, sess, err := startExec(s, raw)
	if err != nil {
		return s.answer(conn, nil, err)
	}
	if err := s.answer(conn, struct{}{}, nil); err != nil {
		sess.kill(x)
		return err
	}
	code := sess.relay(x, conn)
	if code < 0 {
		return nil // the client went away; the command was killed
	}
	return shim.WriteFrame(conn, shim.FrameExit, shim.ExitPayload(code))
}

// execSession is a started exec's streams.
type execSession struct {
	args    shim.ExecArgs
	exited  <-chan unix.WaitStatus
	stdin   *os.File // pipe write end, or the console
	console *os.File // tty only
	outputs []*os.File
	types   []byte
}

// startExec sets up and releases the command; on failure nothing of it is
// left.
func startExec(s *server, raw json.RawMessage) (_ *process.Container, _ *execSession, retErr error) {
	a, c, err := containerOf[shim.ExecArgs](raw)
	if err != nil {
		return nil, nil, err
	}
	if len(a.Cmd) == 0 || a.Cmd[0] == "" {
		return nil, nil, fmt.Errorf("exec in %s: a command is needed: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	if a.Tty && a.Stderr {
		return nil, nil, fmt.Errorf("exec in %s: a terminal has no separate stderr: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	st := c.snapshot()
	if st.Status != shim.StatusRunning {
		return nil, nil, fmt.Errorf("exec in %s: container is %s, not running: %w", a.ID, st.Status, errdefs.ErrFailedPrecondition)
	}
	p := *c.spec.Process
	p.Args, p.Terminal, p.ConsoleSize = a.Cmd, a.Tty, nil
	if a.Tty && a.Width > 0 && a.Height > 0 {
		p.ConsoleSize = &specs.Box{Width: uint(a.Width), Height: uint(a.Height)}
	}
	sess := &execSession{args: a}
	var childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
		if retErr != nil {
			sess.closeAll()
		}
	}()
	// The streams are in place before the process is made: it may run
	// at once (Now), spawned where that is safe.
	opts := process.ExecOpts{InitPath: initPath, PlanPath: planPath(), Pid: st.Pid, Spec: c.spec, BundleDir: c.bundleDir, Process: &p, Timeout: execSetupTimeout, Now: true, Files: &c.execFiles}
	if !a.Tty {
		if a.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, nil, err
			}
			opts.Stdin, sess.stdin = r, w
			childEnds = append(childEnds, r)
		}
		for _, o := range []struct {
			want bool
			typ  byte
			dst  **os.File
		}{{a.Stdout, shim.FrameStdout, &opts.Stdout}, {a.Stderr, shim.FrameStderr, &opts.Stderr}} {
			if !o.want {
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				return nil, nil, err
			}
			*o.dst = w
			childEnds = append(childEnds, w)
			sess.outputs, sess.types = append(sess.outputs, r), append(sess.types, o.typ)
		}
	}
	x, err := process.Exec(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("exec in %s: %w", a.ID, err)
	}
	sess.exited = s.reaper.watchLive(x.Pid())
	if a.Tty {
		if x.Console == nil {
			sess.kill(x)
			return nil, nil, fmt.Errorf("exec in %s: no terminal came back", a.ID)
		}
		console, err := pollable(x.Console)
		if err != nil {
			sess.kill(x)
			return nil, nil, fmt.Errorf("exec in %s: console: %w", a.ID, err)
		}
		x.Console = nil
		sess.console, sess.stdin = console, console
		sess.outputs, sess.types = []*os.File{console}, []byte{shim.FrameStdout}
	}
	if err := x.Start(); err != nil {
		sess.kill(x)
		return nil, nil, fmt.Errorf("exec in %s: %w", a.ID, err)
	}
	return x, sess, nil
}

func (e *execSession) closeAll() {
	if e.stdin != nil {
		e.stdin.Close()
	}
	for _, f := range e.outputs {
		f.Close()
	}
}

// kill ends the command (its whole session: it is a session leader) and
// reaps it.
func (e *execSession) kill(x *process.Container) {
	_ = unix.Kill(-x.Pid(), unix.SIGKILL)
	_ = x.Destroy()
	<-e.exited
	e.closeAll()
}

// relay copies the streams until the command ended and its output was
// sent, and returns its exit code; -1 when the client went away first.
func (e *execSession) relay(x *process.Container, conn net.Conn) int {
	fw := shim.NewFrameWriter(conn)
	var copiers sync.WaitGroup
	for i, r := range e.outputs {
		w := fw.Stream(e.types[i])
		if e.types[i] == shim.FrameStdout && !e.args.Stdout {
			w = io.Discard // a terminal must still be read
		}
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			_, _ = io.Copy(w, r)
		}()
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var closeStdin func()
		if e.stdin != nil && e.console == nil {
			closeStdin = func() { e.stdin.Close() }
		}
		readInput(conn, e.stdin, e.console, closeStdin)
	}()
	var ws unix.WaitStatus
	select {
	case ws = <-e.exited:
	case <-gone:
		// A descendant that left the session may hold the pipes.
		_ = unix.Kill(-x.Pid(), unix.SIGKILL)
		_ = x.Destroy()
		<-e.exited
		drainFiles(&copiers, e.outputs, execDrainGrace)
		e.closeAll()
		return -1
	}
	drainFiles(&copiers, e.outputs, execDrainGrace)
	e.closeAll()
	return exitCode(ws)
}

// readInput applies the client's frames until the connection ends: stdin
// bytes, stdin's end (closeStdin runs, if any) and terminal resizes.
func readInput(conn net.Conn, stdin, console *os.File, closeStdin func()) {
	buf := make([]byte, 32<<10)
	for {
		typ, p, err := shim.ReadFrame(conn, buf)
		if err != nil {
			return
		}
		switch typ {
		case shim.FrameStdin:
			if stdin != nil {
				_, _ = stdin.Write(p)
			}
		case shim.FrameStdinClose:
			if closeStdin != nil {
				closeStdin()
			}
		case shim.FrameResize:
			if w, h, ok := shim.ParseResize(p); ok && console != nil {
				resize(console, w, h)
			}
		}
	}
}

func resize(console *os.File, w, h uint16) {
	sc, err := console.SyscallConn()
	if err != nil {
		return
	}
	_ = sc.Control(func(fd uintptr) {
		_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: w, Row: h})
	})
}

// drainFiles waits for the copiers; past grace (a background process the
// command left holds the pipe) their reads are cut short.
func drainFiles(copiers *sync.WaitGroup, files []*os.File, grace time.Duration) {
	done := make(chan struct{})
	go func() { copiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		for _, f := range files {
			_ = f.SetReadDeadline(time.Unix(1, 0))
		}
		<-done
	}
}

// Attach: the container's output is copied into its log by copyOutput,
// which also hands every chunk to attachTee; attached clients get copies.

// attachBacklog is how many chunks a slow attached client may lag behind;
// past it chunks are dropped for that client, never held from the log.
const attachBacklog = 1024

type attachSub struct {
	stdout, stderr bool
	ch             chan chunk
	dropped        bool
}

type chunk struct {
	typ  byte
	data []byte
}

var attached = struct {
	mu   sync.Mutex
	subs map[*container]map[*attachSub]struct{}
	// stdinClosed are containers whose stdin a stdin_once attach closed.
	stdinClosed map[*container]bool
}{subs: map[*container]map[*attachSub]struct{}{}, stdinClosed: map[*container]bool{}}

// attachTee wraps a container output stream so that attached clients see
// what the log gets.
func attachTee(c *container, stream string, r io.Reader) io.Reader {
	typ := shim.FrameStdout
	if stream == "stderr" {
		typ = shim.FrameStderr
	}
	return &teeReader{c: c, typ: typ, r: r}
}

type teeReader struct {
	c   *container
	typ byte
	r   io.Reader
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		broadcast(t.c, t.typ, p[:n])
	}
	return n, err
}

func broadcast(c *container, typ byte, p []byte) {
	attached.mu.Lock()
	defer attached.mu.Unlock()
	for sub := range attached.subs[c] {
		if (typ == shim.FrameStdout && !sub.stdout) || (typ == shim.FrameStderr && !sub.stderr) {
			continue
		}
		select {
		case sub.ch <- chunk{typ, append([]byte(nil), p...)}:
		default:
			if !sub.dropped {
				sub.dropped = true
				log.Printf("attach to %s: client too slow, output dropped", c.id)
			}
		}
	}
}

func handleAttach(s *server, conn net.Conn, raw json.RawMessage) error {
	a, c, err := containerOf[shim.AttachArgs](raw)
	if err != nil {
		return s.answer(conn, nil, err)
	}
	if st := c.snapshot(); st.Status == shim.StatusExited {
		return s.answer(conn, nil, fmt.Errorf("attach to %s: container has exited: %w", a.ID, errdefs.ErrFailedPrecondition))
	}
	if a.Stdin && c.stdin == nil {
		return s.answer(conn, nil, fmt.Errorf("attach to %s: the container was not created with stdin: %w", a.ID, errdefs.ErrFailedPrecondition))
	}
	tty := c.spec.Process.Terminal
	sub := &attachSub{stdout: a.Stdout, stderr: a.Stderr && !tty, ch: make(chan chunk, attachBacklog)}
	attached.mu.Lock()
	if attached.stdinClosed[c] && a.Stdin {
		attached.mu.Unlock()
		return s.answer(conn, nil, fmt.Errorf("attach to %s: stdin was closed after the first attach (stdin_once): %w", a.ID, errdefs.ErrFailedPrecondition))
	}
	if attached.subs[c] == nil {
		attached.subs[c] = map[*attachSub]struct{}{}
	}
	attached.subs[c][sub] = struct{}{}
	attached.mu.Unlock()
	defer func() {
		attached.mu.Lock()
		delete(attached.subs[c], sub)
		if len(attached.subs[c]) == 0 {
			delete(attached.subs, c)
		}
		attached.mu.Unlock()
	}()
	if err := s.answer(conn, struct{}{}, nil); err != nil {
		return err
	}

	var stdin, console *os.File
	if a.Stdin {
		stdin = c.stdin
	}
	if tty {
		console = c.stdin
	}
	// The attach ends when the client goes, or when its stdin ends (a
	// detach), unless stdin_once hands that end to the process: then the
	// output follows until the process ends.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		detached := make(chan struct{})
		var once sync.Once
		stdinEnd := func() {
			if a.StdinOnce && !tty {
				closeStdinOnce(c, a, tty)
				return
			}
			once.Do(func() { close(detached) })
		}
		go func() {
			readInput(conn, stdin, console, stdinEnd)
			once.Do(func() { close(detached) })
		}()
		<-detached
	}()
	fw := shim.NewFrameWriter(conn)
	send := func(ck chunk) error { return fw.Frame(ck.typ, ck.data) }
	for {
		select {
		case ck := <-sub.ch:
			if err := send(ck); err != nil {
				closeStdinOnce(c, a, tty)
				return nil
			}
		case <-gone:
			closeStdinOnce(c, a, tty)
			return nil
		case <-c.done:
			// Everything the process wrote was broadcast before done.
			for {
				select {
				case ck := <-sub.ch:
					if send(ck) != nil {
						return nil
					}
					continue
				default:
				}
				break
			}
			attached.mu.Lock()
			delete(attached.stdinClosed, c)
			attached.mu.Unlock()
			return fw.Frame(shim.FrameExit, shim.ExitPayload(c.snapshot().ExitCode))
		}
	}
}

// closeStdinOnce closes the container's stdin once the first attach that
// used it ended, if the container asked for stdin_once. A terminal stays
// open: it carries the output too.
func closeStdinOnce(c *container, a shim.AttachArgs, tty bool) {
	if !a.Stdin || !a.StdinOnce || tty || c.stdin == nil {
		return
	}
	attached.mu.Lock()
	defer attached.mu.Unlock()
	if !attached.stdinClosed[c] {
		attached.stdinClosed[c] = true
		c.stdin.Close()
	}
}
