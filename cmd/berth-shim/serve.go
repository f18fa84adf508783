package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/nsenter"
	"github.com/berth-dev/berth/runtime/shim"
)

func init() { roles["serve"] = serveMain }

// handler serves one op of the control protocol (see package runtime/shim):
// it decodes args itself and returns a JSON-encodable result. An error that
// wraps an errdefs sentinel reaches berthd with its code.
type handler func(s *server, args json.RawMessage) (any, error)

// streamHandler serves an op that takes over the connection: it writes the
// Response itself (s.answer) and then uses conn as it likes.
type streamHandler func(s *server, conn net.Conn, args json.RawMessage) error

// handlers and streamHandlers are the ops; each area registers its ops from
// its own file's init.
var (
	handlers = map[string]handler{
		shim.OpPing:     func(*server, json.RawMessage) (any, error) { return struct{}{}, nil },
		shim.OpStatus:   func(s *server, _ json.RawMessage) (any, error) { return s.status(), nil },
		shim.OpShutdown: handleShutdown,
	}
	streamHandlers = map[string]streamHandler{}
	// shutdownHooks run (in order) when the shim shuts down, before the pause
	// process is killed: the containers area stops its processes here.
	shutdownHooks []func(s *server)
)

// server is the state of one pod's shim.
type server struct {
	podID    string
	stateDir string
	started  time.Time
	lis      net.Listener
	reaper   *reaper
	mon      *monitor

	mu       sync.Mutex
	pausePid int
	closing  bool
}

func serveMain(args []string) int {
	fs := flag.NewFlagSet("berth-shim serve", flag.ContinueOnError)
	id := fs.String("id", "", "pod id")
	stateDir := fs.String("state-dir", "", "pod state dir (holds the control socket)")
	pause := fs.Bool("pause", false, "start a pause process as PID 1 of a new PID namespace")
	netns := fs.String("pause-netns", "", "network namespace of the pause process")
	ipcns := fs.String("pause-ipcns", "", "IPC namespace of the pause process")
	utsns := fs.String("pause-utsns", "", "UTS namespace of the pause process")
	userns := fs.String("pause-userns", "", "user namespace of the pause process")
	sync := fs.Bool("sync", false, "fd 3: wait for a byte before starting; fd 4: report readiness")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("berth-shim " + *id + ": ")
	if *id == "" || *stateDir == "" {
		log.Print("--id and --state-dir are required")
		return 2
	}
	// With --sync, berthd writes a byte on fd 3 once it placed us (cgroup)
	// and we report readiness on fd 4.
	var ready *os.File
	if *sync {
		// Not for the processes we start.
		unix.CloseOnExec(3)
		unix.CloseOnExec(4)
		goPipe := os.NewFile(3, "go")
		b := make([]byte, 1)
		_, _ = goPipe.Read(b)
		goPipe.Close()
		ready = os.NewFile(4, "ready")
	}
	s := &server{podID: *id, stateDir: *stateDir, started: time.Now().UTC(), reaper: newReaper(), mon: newMonitor(-1, -1)}
	var pauseNS *pauseNamespaces
	if *pause {
		pauseNS = &pauseNamespaces{user: *userns, net: *netns, ipc: *ipcns, uts: *utsns}
	}
	err := s.setUp(pauseNS)
	if ready != nil {
		msg := "ok"
		if err != nil {
			msg = err.Error()
		}
		_, _ = ready.Write([]byte(msg))
		ready.Close()
	}
	if err != nil {
		log.Print(err)
		s.killPause()
		return 1
	}
	go s.handleSignals()
	go s.watchIdle()
	s.serve()
	return 0
}

func (s *server) setUp(pause *pauseNamespaces) error {
	// Orphaned descendants (a container's daemonised children) are ours to reap.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	if pause != nil {
		pid, err := s.startPause(*pause)
		if err != nil {
			return fmt.Errorf("start pause: %w", err)
		}
		s.pausePid = pid
	}
	sock := filepath.Join(s.stateDir, shim.SocketName)
	_ = os.Remove(sock)
	// Listening on a relative path lifts the 108-byte limit of socket paths.
	if err := os.Chdir(s.stateDir); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	lis, err := listenUnix(shim.SocketName)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		lis.Close()
		_ = os.Remove(sock)
		return fmt.Errorf("chmod socket: %w", err)
	}
	s.lis = lis
	return nil
}

// startPause runs "berth-shim pause" as PID 1 of a new PID namespace, in the
// pod's user, network, IPC and UTS namespaces. nsenter's constructor joins
// them in the new process before anything else runs: no thread of the shim
// ever changes namespaces (a Go thread that did could be one the runtime
// later runs other code on, or the main thread itself).
func (s *server) startPause(o pauseNamespaces) (int, error) {
	nsc := nsenter.Config{Join: map[string]string{}, New: []string{nsenter.PID}, SyncFD: 4}
	for kind, p := range map[string]string{nsenter.User: o.user, nsenter.Net: o.net, nsenter.IPC: o.ipc, nsenter.UTS: o.uts} {
		if p != "" {
			nsc.Join[kind] = p
		}
	}
	nsEnv, err := nsc.Env()
	if err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	// fd 3: the pause process reports once it dropped its privileges;
	// fd 4: nsenter reports the pid of the process it forked into the
	// PID namespace (or why it failed).
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readyR.Close()
	syncR, syncW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return 0, err
	}
	defer syncR.Close()
	p, err := os.StartProcess(self, []string{"berth-shim", "pause"}, &os.ProcAttr{
		Dir:   "/",
		Env:   append(os.Environ(), nsEnv...),
		Files: []*os.File{null, null, null, readyW, syncW},
		// In our process group: berthd kills the group when a launch fails.
	})
	readyW.Close()
	syncW.Close()
	if err != nil {
		return 0, err
	}
	// nsenter's process leaves once it reported; the pause is our child
	// (CLONE_PARENT).
	<-s.reaper.watch(p.Pid)
	// One line: the pause keeps its copy of the pipe until it closes it.
	report, _ := bufio.NewReader(syncR).ReadString('\n')
	var pid int
	if _, err := fmt.Sscanf(report, "pid %d", &pid); err != nil {
		return 0, fmt.Errorf("pause: %s", strings.TrimSpace(report))
	}
	msg, _ := io.ReadAll(readyR)
	if string(msg) != "ok" {
		_ = unix.Kill(pid, unix.SIGKILL)
		return 0, fmt.Errorf("pause: %s", msg)
	}
	return pid, nil
}

// pauseNamespaces are the pod's namespaces the pause process joins.
type pauseNamespaces struct{ user, net, ipc, uts string }

func (s *server) status() shim.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return shim.Status{PodID: s.podID, Pid: os.Getpid(), PausePid: s.pausePid, Started: s.started.Format(time.RFC3339Nano)}
}

func (s *server) serve() {
	for {
		conn, err := s.lis.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				// Shutdown answers, then exits the process.
				select {}
			}
			if s.mon.park() {
				continue
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			log.Printf("accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mon.enter()
		go func() { defer s.mon.leave(); s.handleConn(conn) }()
	}
}

func (s *server) handleConn(conn net.Conn) {
	defer conn.Close()
	dec := json.NewDecoder(conn)
	for {
		var req shim.Request
		if err := dec.Decode(&req); err != nil {
			return
		}
		if sh, ok := streamHandlers[req.Op]; ok {
			// Bytes the client sent right after its request may sit in the
			// decoder's buffer: the handler reads them first.
			sc := &streamConn{Conn: conn, r: io.MultiReader(dec.Buffered(), conn)}
			if err := sh(s, sc, req.Args); err != nil {
				log.Printf("%s: %v", req.Op, err)
			}
			return
		}
		h, ok := handlers[req.Op]
		var result any
		var err error
		if !ok {
			err = fmt.Errorf("unknown op %q: %w", req.Op, errdefs.ErrUnimplemented)
		} else {
			result, err = h(s, req.Args)
		}
		if err := s.answer(conn, result, err); err != nil {
			return
		}
		if req.Op == shim.OpShutdown && err == nil {
			os.Exit(0)
		}
	}
}

// streamConn is a connection whose reads start with what the request
// decoder had already buffered, less the newline that ends the request.
type streamConn struct {
	net.Conn
	r       io.Reader
	started bool
}

func (c *streamConn) Read(p []byte) (int, error) {
	for !c.started {
		n, err := c.r.Read(p)
		if n > 0 && p[0] == '\n' {
			copy(p, p[1:n])
			n--
		}
		if n > 0 || err != nil {
			c.started = true
			return n, err
		}
	}
	return c.r.Read(p)
}

// answer writes the Response of a call.
func (s *server) answer(conn net.Conn, result any, err error) error {
	var resp shim.Response
	if err != nil {
		resp.Error, resp.Code = err.Error(), shim.CodeOf(err)
	} else if result != nil {
		b, merr := json.Marshal(result)
		if merr != nil {
			resp.Error, resp.Code = "encode result: "+merr.Error(), shim.CodeUnknown
		} else {
			resp.Result = b
		}
	}
	return json.NewEncoder(conn).Encode(&resp)
}

func handleShutdown(s *server, _ json.RawMessage) (any, error) {
	s.shutdown()
	return struct{}{}, nil
}

// shutdown stops what the shim owns and its socket; the caller exits.
func (s *server) shutdown() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	s.mu.Unlock()
	for _, h := range shutdownHooks {
		h(s)
	}
	s.killPause()
	_ = s.lis.Close()
	_ = os.Remove(filepath.Join(s.stateDir, shim.SocketName))
}

func (s *server) killPause() {
	s.mu.Lock()
	pid := s.pausePid
	s.mu.Unlock()
	if pid == 0 {
		return
	}
	exited := s.reaper.watch(pid)
	// SIGKILL ends PID 1 of a namespace and with it every process in it.
	_ = unix.Kill(pid, unix.SIGKILL)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		log.Printf("pause %d did not exit", pid)
	}
}

func (s *server) handleSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT)
	signal.Ignore(unix.SIGHUP, unix.SIGPIPE)
	<-ch
	s.shutdown()
	os.Exit(0)
}
