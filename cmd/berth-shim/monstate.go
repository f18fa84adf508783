package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

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
//	conn <fd> <bytes read of the request, hex or ->
//	signal <number>
//
// A descriptor of -1 is absent; exited containers carry only their state.
const monStateVersion = "berth-mon 1"

type monStateBlob struct {
	text string
	fds  []int // must survive the execve
}

func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *server) monState(lis *net.UnixListener) (*monStateBlob, error) {
	out := &monStateBlob{}
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
