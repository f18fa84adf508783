package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/shim"
)

// The state handed to berth-mon and back: text lines of space-separated
// fields, strings escaped by esc. berth-mon keeps the blob as it got it and
// appends "conn" and "signal" lines when it execs the shim back.
//
//	berth-mon 1
//	pod <id> <state dir> <started> <pause pid> <listen fd> <shim exe fd> <berth-mon fd>
//	ctr <id> <pid> <tty> <stdout fd> <stderr fd> <stdin fd> <log fd> <log dir> <log name> <state dir> <bundle dir> <stdin closed>
//	state <ContainerState as JSON>
//	exec <PID ns fd> <cgroup dir fd> <seccomp fd> <plan offset> <head length> <env length> <n> (<ns fd> <clone flag>)*n <m> (<tasks fd>)*m
//	plans <memfd>
//	conn <fd> <bytes read of the request, hex or ->
//	xexec <conn fd> <pid> <stdout fd> <stderr fd> <stdout left> <stdout total> <stderr left> <stderr total> <wait status or -1> <timeout left, ns, or -1> <timed out>
//	signal <number>
//
// A descriptor of -1 is absent; exited containers carry only their state.
// An "exec" line follows the state of a running container that berth-mon
// may spawn ExecSyncs into (exec.c): the files process.ShareExec keeps
// open and where its plan parts are in the "plans" memfd. berth-mon closes
// those at its way back; "xexec" lines are the ExecSyncs it had under way
// then, which the Go shim finishes (resumeExecSync).
const monStateVersion = "berth-mon 2"

type monStateBlob struct {
	text string
	fds  []int // must survive the execve
	// plans is the memfd of the plan parts, -1 if none: the caller's to
	// close if the execve fails.
	plans int
}

// execLine is the "exec" line of container c, with its plan parts added
// to plans; "" if berth-mon cannot spawn into c, which then promotes.
func (c *container) execLine(plans *bytes.Buffer, fds *[]int) string {
	if c.spec == nil || c.spec.Process == nil {
		return ""
	}
	p := *c.spec.Process
	p.Args, p.Terminal, p.ConsoleSize = nil, false, nil
	sh, err := process.ShareExec(process.ExecOpts{Pid: c.state.Pid, Spec: c.spec, BundleDir: c.bundleDir, Process: &p, Files: &c.execFiles})
	if err != nil {
		if !errors.Is(err, process.ErrNotShared) {
			log.Printf("container %s: exec files for berth-mon: %v", c.id, err)
		}
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "exec %d %d %d %d %d %d %d", sh.PIDNS, sh.CgroupDir, sh.Seccomp, plans.Len(), len(sh.PlanHead), len(sh.PlanEnv), len(sh.Join))
	plans.Write(sh.PlanHead)
	plans.Write(sh.PlanEnv)
	for i, fd := range sh.Join {
		fmt.Fprintf(&b, " %d %d", fd, sh.JoinFlags[i])
	}
	fmt.Fprintf(&b, " %d", len(sh.CgroupTasks))
	for _, fd := range sh.CgroupTasks {
		fmt.Fprintf(&b, " %d", fd)
	}
	*fds = append(*fds, sh.PIDNS)
	*fds = append(*fds, sh.Join...)
	*fds = append(*fds, sh.CgroupTasks...)
	for _, fd := range []int{sh.CgroupDir, sh.Seccomp} {
		if fd >= 0 {
			*fds = append(*fds, fd)
		}
	}
	b.WriteByte('\n')
	return b.String()
}

func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *server) monState(lis *net.UnixListener) (_ *monStateBlob, err error) {
	out := &monStateBlob{plans: -1}
	var plans bytes.Buffer
	var b strings.Builder
	lfd, err := rawFD(lis)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	out.fds = append(out.fds, lfd, s.mon.exeFD, s.mon.monFD)
	st := s.status()
	fmt.Fprintf(&b, "%s\npod %s %s %s %d %d %d %d\n", monStateVersion, esc(s.podID), esc(s.stateDir), esc(st.Started), st.PausePid, lfd, s.mon.exeFD, s.mon.monFD)
	containers.mu.Lock()
	defer containers.mu.Unlock()
	attached.mu.Lock()
	defer attached.mu.Unlock()
	for _, c := range containers.byID {
		fds := [4]int{-1, -1, -1, -1} // stdout, stderr, stdin, log
		tty := c.spec.Process.Terminal
		logDir, logName := "", ""
		exited := false
		select {
		case <-c.done:
			exited = true
		default:
		}
		if !exited {
			for i, r := range c.outputs {
				if fds[i], err = rawFD(r); err != nil {
					return nil, fmt.Errorf("container %s output: %w", c.id, err)
				}
			}
			if c.stdin != nil && !tty && !attached.stdinClosed[c] {
				if fds[2], err = rawFD(c.stdin); err != nil {
					return nil, fmt.Errorf("container %s stdin: %w", c.id, err)
				}
			}
			if c.log != nil {
				fds[3] = c.log.FD()
				logDir, logName = c.log.Location()
			}
		}
		for _, fd := range fds {
			if fd >= 0 {
				out.fds = append(out.fds, fd)
			}
		}
		js, err := json.Marshal(c.state)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "ctr %s %d %d %d %d %d %d %s %s %s %s %d\nstate %s\n", esc(c.id), c.state.Pid, b01(tty),
			fds[0], fds[1], fds[2], fds[3], esc(logDir), esc(logName), esc(c.stateDir), esc(c.bundleDir),
			b01(attached.stdinClosed[c]), js)
		if !exited && c.state.Status == shim.StatusRunning {
			b.WriteString(c.execLine(&plans, &out.fds))
		}
	}
	if plans.Len() > 0 {
		if out.plans, err = unix.MemfdCreate("berth-mon-plans", unix.MFD_CLOEXEC); err != nil {
			return nil, fmt.Errorf("memfd: %w", err)
		}
		if _, err := unix.Write(out.plans, plans.Bytes()); err != nil {
			unix.Close(out.plans)
			return nil, fmt.Errorf("write plans: %w", err)
		}
		fmt.Fprintf(&b, "plans %d\n", out.plans)
		out.fds = append(out.fds, out.plans)
	}
	out.text = b.String()
	return out, nil
}

// parsedState is a blob read back by the resumed shim.
type parsedState struct {
	podID, stateDir, started      string
	pausePid, lisFD, exeFD, monFD int
	ctrs                          []parsedCtr
	conns                         []parsedConn
	execs                         []parsedExec
	signal                        int
}

type parsedCtr struct {
	id                           string
	pid                          int
	tty, stdinClosed             bool
	outFD, errFD, inFD, logFD    int
	logDir, logName, dir, bundle string
	state                        shim.ContainerState
}

type parsedConn struct {
	fd     int
	prefix []byte
}

// parsedExec is an ExecSync berth-mon had under way ("xexec").
type parsedExec struct {
	conn, pid   int
	out         [2]int // stdout, stderr read ends; -1 at their end
	left, total [2]int64
	status      int // -1: not reaped
	timeoutLeft int64
	timedOut    bool
}

func unesc(f string) (string, error) {
	if f == "-" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			b.WriteByte(f[i])
			continue
		}
		if i+2 >= len(f) {
			return "", fmt.Errorf("bad escape in %q", f)
		}
		v, err := strconv.ParseUint(f[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", f)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// parseMonState reads a blob; fields are decoded in the order they were
// written.
func parseMonState(text string) (*parsedState, error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	if !sc.Scan() || sc.Text() != monStateVersion {
		return nil, fmt.Errorf("state: not %q", monStateVersion)
	}
	p := &parsedState{}
	for sc.Scan() {
		line := sc.Text()
		kind, rest, _ := strings.Cut(line, " ")
		if kind == "state" {
			if len(p.ctrs) == 0 {
				return nil, fmt.Errorf("state: state line before ctr")
			}
			if err := json.Unmarshal([]byte(rest), &p.ctrs[len(p.ctrs)-1].state); err != nil {
				return nil, fmt.Errorf("state: %w", err)
			}
			continue
		}
		f := strings.Fields(rest)
		var err error
		str := func(i int) string {
			if i >= len(f) {
				err = fmt.Errorf("state: short %s line", kind)
				return ""
			}
			v, e := unesc(f[i])
			if e != nil && err == nil {
				err = e
			}
			return v
		}
		num := func(i int) int {
			v, e := strconv.Atoi(str(i))
			if e != nil && err == nil {
				err = fmt.Errorf("state: %s line: %w", kind, e)
			}
			return v
		}
		switch kind {
		case "pod":
			p.podID, p.stateDir, p.started = str(0), str(1), str(2)
			p.pausePid, p.lisFD, p.exeFD, p.monFD = num(3), num(4), num(5), num(6)
		case "ctr":
			p.ctrs = append(p.ctrs, parsedCtr{id: str(0), pid: num(1), tty: num(2) == 1,
				outFD: num(3), errFD: num(4), inFD: num(5), logFD: num(6), logDir: str(7), logName: str(8),
				dir: str(9), bundle: str(10), stdinClosed: num(11) == 1})
		case "conn":
			c := parsedConn{fd: num(0)}
			if h := str(1); h != "" && err == nil {
				c.prefix, err = hex.DecodeString(h)
			}
			p.conns = append(p.conns, c)
		case "exec", "plans":
			// berth-mon's alone: it closed those files on its way back.
		case "xexec":
			i64 := func(i int) int64 {
				v, e := strconv.ParseInt(str(i), 10, 64)
				if e != nil && err == nil {
					err = fmt.Errorf("state: %s line: %w", kind, e)
				}
				return v
			}
			p.execs = append(p.execs, parsedExec{conn: num(0), pid: num(1), out: [2]int{num(2), num(3)},
				left: [2]int64{i64(4), i64(6)}, total: [2]int64{i64(5), i64(7)}, status: num(8),
				timeoutLeft: i64(9), timedOut: num(10) == 1})
		case "signal":
			p.signal = num(0)
		default:
			err = fmt.Errorf("state: unknown line %q", kind)
		}
		if err != nil {
			return nil, err
		}
	}
	return p, sc.Err()
}
