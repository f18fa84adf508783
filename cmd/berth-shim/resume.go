package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/crilog"
	"github.com/berth-dev/berth/runtime/process"
)

// "berth-shim resume" is the shim again after berth-mon (demote.go) exec'd
// it back for an op it does not serve: it rebuilds the server from the
// state blob, serves the connections berth-mon handed over and goes on as
// "serve" would.

func init() { roles["resume"] = resumeMain }

func resumeMain(args []string) int {
	fs := flag.NewFlagSet("berth-shim resume", flag.ContinueOnError)
	stateFD := fs.Int("state-fd", -1, "memfd holding the state")
	id := fs.String("id", "", "pod id")
	_ = fs.String("state-dir", "", "pod state dir")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("berth-shim " + *id + ": ")
	// berth-mon exec'd us through a descriptor, which names the process
	// after its number (comm, what ps and make bench show).
	// /proc/self/comm is the leader's, whichever thread runs this.
	if err := os.WriteFile("/proc/self/comm", []byte("berth-shim"), 0); err != nil {
		log.Printf("resume: set name: %v", err)
	}
	if *stateFD < 3 {
		log.Print("resume: --state-fd is required")
		return 2
	}
	f := os.NewFile(uintptr(*stateFD), "state")
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<24))
	f.Close()
	if err != nil {
		log.Printf("resume: read state: %v", err)
		return 1
	}
	p, err := parseMonState(string(data))
	if err != nil {
		log.Printf("resume: %v", err)
		return 1
	}
	s, err := resumeServer(p)
	if err != nil {
		log.Printf("resume: %v", err)
		return 1
	}
	go s.handleSignals()
	if p.signal != 0 {
		// berth-mon got SIGTERM: the shutdown it asks for is ours.
		go func() { s.shutdown(); os.Exit(0) }()
	}
	for _, c := range p.conns {
		conn, err := adoptConn(c)
		if err != nil {
			log.Printf("resume: %v", err)
			continue
		}
		s.mon.enter()
		go func() { defer s.mon.leave(); s.handleConn(conn) }()
	}
	for _, x := range p.execs {
		s.mon.enter()
		go func() { defer s.mon.leave(); s.resumeExecSync(x) }()
	}
	go s.watchIdle()
	s.serve()
	return 0
}

func resumeServer(p *parsedState) (*server, error) {
	started, err := time.Parse(time.RFC3339Nano, p.started)
	if err != nil {
		return nil, fmt.Errorf("started: %w", err)
	}
	for _, fd := range []int{p.exeFD, p.monFD} {
		unix.CloseOnExec(fd)
	}
	s := &server{podID: p.podID, stateDir: p.stateDir, started: started, pausePid: p.pausePid,
		reaper: newReaper(), mon: newMonitor(p.monFD, p.exeFD)}
	lf := os.NewFile(uintptr(p.lisFD), "listener")
	s.lis, err = net.FileListener(lf)
	lf.Close()
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	for _, pc := range p.ctrs {
		c, err := resumeContainer(s, pc)
		if err != nil {
			// The container stays without us; berthd sees it not found.
			log.Printf("resume: container %s: %v", pc.id, err)
			continue
		}
		containers.mu.Lock()
		containers.byID[c.id] = c
		containers.mu.Unlock()
	}
	// Exits that came while berth-mon ran are still zombies: collect them
	// now, the SIGCHLD was berth-mon's.
	s.reaper.reap()
	return s, nil
}

func resumeContainer(s *server, pc parsedCtr) (*container, error) {
	out, errOut, in, logf := adoptFile(pc.outFD, "stdout"), adoptFile(pc.errFD, "stderr"), adoptFile(pc.inFD, "stdin"), adoptFile(pc.logFD, "log")
	c := &container{id: pc.id, stateDir: pc.dir, bundleDir: pc.bundle, state: pc.state, done: make(chan struct{})}
	spec, err := readSpec(pc.bundle)
	if err != nil {
		return nil, err
	}
	c.spec = spec
	if c.proc, err = process.Adopt(pc.pid, spec); err != nil {
		return nil, err
	}
	if logf != nil {
		c.log = crilog.Adopt(pc.logDir, pc.logName, logf)
	}
	if pc.stdinClosed {
		attached.mu.Lock()
		attached.stdinClosed[c] = true
		attached.mu.Unlock()
	}
	if out == nil {
		close(c.done) // exited: its record is on disk
		return c, nil
	}
	c.outputs = []*os.File{out}
	if pc.tty {
		c.stdin = out
	} else {
		c.stdin = in
		if errOut != nil {
			c.outputs = append(c.outputs, errOut)
		}
	}
	c.resumeCopy()
	go c.reap(s.reaper.watch(pc.pid))
	return c, nil
}

// adoptFile is a descriptor berth-mon kept across its execve, ours again
// (close-on-exec); nil for -1, an absent one.
func adoptFile(fd int, name string) *os.File {
	if fd < 0 {
		return nil
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name)
}

// adoptConn is a client connection berth-mon accepted, with the bytes it
// read of the request put back in front.
func adoptConn(pc parsedConn) (net.Conn, error) {
	unix.CloseOnExec(pc.fd)
	f := os.NewFile(uintptr(pc.fd), "conn")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("connection: %w", err)
	}
	if len(pc.prefix) == 0 {
		return conn, nil
	}
	return &prefixConn{Conn: conn, prefix: pc.prefix}, nil
}

type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
