package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim"
)

// Demotion (docs/design.md, "The C monitor"): once the shim has been idle
// for a while it replaces its own image by execve with berth-mon, a small C
// monitor, in the same process. Pid, start time, children, the subreaper
// flag, the control socket and every container's pipes survive the execve;
// the steady state goes along as a text blob in a memfd (monstate.go).
// berth-mon copies the output into the logs and answers the cheap ops, and
// execs this binary back ("resume", resume.go) for anything else.

// idleEnv sets how long the shim waits idle before it demotes: a Go
// duration, "0" or "off" to never demote. berthd passes it (the
// shim_idle_monitor config key).
const idleEnv = "BERTH_SHIM_IDLE_MONITOR"

// maxMonContainers is berth-mon's MAX_CTRS (cmd/berth-mon/mon.h).
const maxMonContainers = 64

// defaultIdle is the wait when the environment does not say.
const defaultIdle = 2 * time.Second

// monitor tracks the activity that forbids demotion and holds what the
// execve needs.
type monitor struct {
	after time.Duration
	// monFD is berth-mon, opened once at start (the binary beside ours at
	// that time: a later upgrade may change the state format); exeFD is
	// this binary, for berth-mon to exec back into. -1: never demote.
	monFD, exeFD int

	mu       sync.Mutex
	active   int // connections being served
	last     time.Time
	demoting bool
	parked   chan struct{} // the accept loop stopped for a demotion
	resume   chan struct{} // closed when a demotion was given up
}

// newMonitor opens the executables the hand-off needs; without berth-mon
// beside us the shim never demotes.
func newMonitor(monFD, exeFD int) *monitor {
	m := &monitor{after: defaultIdle, monFD: monFD, exeFD: exeFD, last: time.Now()}
	switch v := os.Getenv(idleEnv); v {
	case "":
	case "0", "off", "false":
		m.after = 0
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			log.Printf("%s=%q: not a duration; not demoting", idleEnv, v)
			d = 0
		}
		m.after = d
	}
	if m.after > 0 {
		m.after = resumedIdle(m.after, m.last)
	}
	if m.after == 0 || (monFD >= 0 && exeFD >= 0) {
		return m
	}
	self, err := os.Executable()
	if err == nil {
		exeFD, err = unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err == nil {
		monFD, err = unix.Open(filepath.Join(filepath.Dir(self), "berth-mon"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Close(exeFD)
		}
	}
	if err != nil {
		// Logged once: the pod keeps the Go shim, as before berth-mon.
		log.Printf("no berth-mon, not demoting: %v", err)
		m.after = 0
		return m
	}
	m.monFD, m.exeFD = monFD, exeFD
	return m
}

func (m *monitor) enter() {
	m.mu.Lock()
	m.active++
	m.mu.Unlock()
}

func (m *monitor) leave() {
	m.mu.Lock()
	m.active--
	m.last = time.Now()
	m.mu.Unlock()
}

// park is called by the accept loop when Accept failed: while a demotion
// is under way it waits until that demotion is given up (or forever: the
// execve replaces us).
func (m *monitor) park() bool {
	m.mu.Lock()
	if !m.demoting {
		m.mu.Unlock()
		return false
	}
	parked, resume := m.parked, m.resume
	m.mu.Unlock()
	close(parked)
	<-resume
	return true
}

// watch demotes the shim once it stayed idle for m.after.
func (s *server) watchIdle() {
	m := s.mon
	if m.after == 0 {
		return
	}
	tick := m.after / 4
	for {
		time.Sleep(tick)
		m.mu.Lock()
		idle := m.active == 0 && time.Since(m.last) >= m.after
		m.mu.Unlock()
		if !idle {
			continue
		}
		if err := s.demote(); err != nil {
			log.Printf("demote: %v", err)
			if errExecFailed(err) {
				return
			}
		}
	}
}

type execError struct{ error }

func errExecFailed(err error) bool { _, ok := err.(execError); return ok }

// demote hands the shim's state to berth-mon by execve; it returns only
// when it gave up (the shim was not idle after all, or the execve failed).
func (s *server) demote() error {
	lis, ok := s.lis.(*net.UnixListener)
	if !ok {
		return execError{fmt.Errorf("listener is a %T", s.lis)}
	}
	// No reap from here on: an exit that comes now is berth-mon's (or,
	// if we give up, ours again) and leaves a zombie meanwhile.
	s.reaper.freeze()
	defer s.reaper.thaw()
	if !quiet(s) {
		return nil
	}
	m := s.mon
	m.mu.Lock()
	m.demoting, m.parked, m.resume = true, make(chan struct{}), make(chan struct{})
	parked, resume := m.parked, m.resume
	m.mu.Unlock()
	giveUp := func() {
		m.mu.Lock()
		m.demoting = false
		m.mu.Unlock()
		_ = lis.SetDeadline(time.Time{})
		close(resume)
	}
	_ = lis.SetDeadline(time.Unix(1, 0))
	select {
	case <-parked:
	case <-time.After(time.Second):
		giveUp()
		return nil
	}
	m.mu.Lock()
	busy := m.active > 0
	m.mu.Unlock()
	if busy || !quiet(s) {
		giveUp()
		return nil
	}
	cs := liveContainers()
	for _, c := range cs {
		c.pauseCopy()
	}
	err := s.execMonitor(lis, cs)
	for _, c := range cs {
		c.resumeCopy()
	}
	giveUp()
	return execError{err}
}

// quiet tells whether nothing but steady state is left: every container
// runs (its exit not taken by the reaper) or has ended with its exit
// recorded, no create, restore or attach is under way.
func quiet(s *server) bool {
	containers.mu.Lock()
	defer containers.mu.Unlock()
	if len(containers.pending) > 0 || containers.closed || len(containers.byID) > maxMonContainers {
		return false
	}
	attached.mu.Lock()
	nAttached := len(attached.subs)
	attached.mu.Unlock()
	if nAttached > 0 {
		return false
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return false
	}
	for _, c := range containers.byID {
		if c == nil || c.restore != nil || c.proc == nil {
			return false
		}
		select {
		case <-c.done:
			continue
		default:
		}
		if c.state.Status != shim.StatusRunning || !s.reaper.watching(c.state.Pid) {
			return false
		}
	}
	return true
}

func liveContainers() []*container {
	containers.mu.Lock()
	defer containers.mu.Unlock()
	var out []*container
	for _, c := range containers.byID {
		select {
		case <-c.done:
		default:
			out = append(out, c)
		}
	}
	return out
}

// pauseCopy stops the output copiers; what they read is in the log (a line
// cut here is a partial record), the rest waits in the pipes.
func (c *container) pauseCopy() {
	c.handoff.Store(true)
	for _, r := range c.outputs {
		_ = r.SetReadDeadline(time.Unix(1, 0))
	}
	c.copiers.Wait()
}

func (c *container) resumeCopy() {
	c.handoff.Store(false)
	streams := []string{"stdout", "stderr"}
	for i, r := range c.outputs {
		_ = r.SetReadDeadline(time.Time{})
		c.copiers.Add(1)
		go c.copyOutput(streams[i], r)
	}
}

// execMonitor writes the state and execs berth-mon; it returns only on
// failure, with everything as it was.
func (s *server) execMonitor(lis *net.UnixListener, cs []*container) error {
	st, err := s.monState(lis)
	if err != nil {
		return err
	}
	if st.plans >= 0 {
		defer unix.Close(st.plans)
	}
	var inherit []int
	defer func() {
		for _, fd := range inherit {
			unix.CloseOnExec(fd)
		}
	}()
	for _, fd := range st.fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep fd %d: %w", fd, err)
		}
		inherit = append(inherit, fd)
	}
	mfd, err := unix.MemfdCreate("berth-mon-state", 0)
	if err != nil {
		return fmt.Errorf("memfd: %w", err)
	}
	defer unix.Close(mfd)
	if _, err := unix.Write(mfd, []byte(st.text)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	argv := []string{"berth-mon", "--state-fd", fmt.Sprint(mfd), "--id", s.podID, "--state-dir", s.stateDir}
	// The execve keeps the signal mask: a SIGTERM or SIGCHLD that comes
	// during the switch stays pending for berth-mon's signalfd.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var block, old unix.Sigset_t
	for _, sig := range []syscall.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGCHLD} {
		block.Val[(sig-1)/64] |= 1 << ((uint(sig) - 1) % 64)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &block, &old); err != nil {
		return fmt.Errorf("block signals: %w", err)
	}
	err = syscall.Exec(fmt.Sprintf("/proc/self/fd/%d", s.mon.monFD), argv, napEnviron(s.mon.after, time.Now()))
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	return fmt.Errorf("exec berth-mon: %w", err)
}

// rawFD is f's descriptor, without turning it blocking as Fd does.
func rawFD(f interface {
	SyscallConn() (syscall.RawConn, error)
}) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// esc makes s one field of a state line: bytes outside printable ASCII,
// space and '%' become %XX (berth-mon decodes them).
func esc(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch <= ' ' || ch >= 0x7f || ch == '%' || s == "-" {
			fmt.Fprintf(&b, "%%%02X", ch)
		} else {
			b.WriteByte(ch)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}
