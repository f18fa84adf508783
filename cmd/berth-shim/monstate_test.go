package main

import (
	"fmt"
	"testing"
)

// The blob berth-mon gets back to the Go shim: fields with spaces, '%',
// newlines and non-ASCII survive, and the lines berth-mon appends parse.
func TestMonStateRoundTrip(t *testing.T) {
	id, dir := "a b%c\nd", "/var/log/pods/ns_x y_ü"
	text := fmt.Sprintf("%s\npod %s %s %s %d %d %d %d\n", monStateVersion, esc("pod-1"), esc("/run/berth/pods/p"), esc("2026-12-07T10:00:00.5Z"), 42, 5, 6, 7) +
		fmt.Sprintf("ctr %s %d %d %d %d %d %d %s %s %s %s %d\n", esc(id), 100, 0, 8, 9, -1, 10, esc(dir), esc("c/0.log"), esc("/s"), esc("-"), 1) +
		`state {"id":"x","pid":100,"status":"running","exitCode":0}` + "\n" +
		"exec 20 -1 21 0 120 40 2 22 131072 23 536870912 1 24\nplans 25\n" +
		"conn 11 7b0a\nconn 12 -\n" +
		"xexec 13 300 14 -1 1000 24 16777216 0 -1 2500000000 0\nxexec 15 301 -1 -1 0 9 0 0 35072 -1 1\nsignal 15\n"
	p, err := parseMonState(text)
	if err != nil {
		t.Fatal(err)
	}
	if p.podID != "pod-1" || p.pausePid != 42 || p.lisFD != 5 || p.exeFD != 6 || p.monFD != 7 || p.started != "2026-12-07T10:00:00.5Z" {
		t.Errorf("pod: %+v", p)
	}
	if len(p.ctrs) != 1 {
		t.Fatalf("ctrs: %+v", p.ctrs)
	}
	c := p.ctrs[0]
	if c.id != id || c.logDir != dir || c.logName != "c/0.log" || c.bundle != "-" || c.outFD != 8 || c.inFD != -1 || !c.stdinClosed || c.state.Status != "running" {
		t.Errorf("ctr: %+v", c)
	}
	if len(p.conns) != 2 || p.conns[0].fd != 11 || string(p.conns[0].prefix) != "{\n" || p.conns[1].prefix != nil || p.signal != 15 {
		t.Errorf("conns %+v signal %d", p.conns, p.signal)
	}
	want := []parsedExec{
		{conn: 13, pid: 300, out: [2]int{14, -1}, left: [2]int64{1000, 16777216}, total: [2]int64{24, 0}, status: -1, timeoutLeft: 2500000000},
		{conn: 15, pid: 301, out: [2]int{-1, -1}, total: [2]int64{9, 0}, status: 35072, timeoutLeft: -1, timedOut: true},
	}
	if fmt.Sprint(p.execs) != fmt.Sprint(want) {
		t.Errorf("execs %+v, want %+v", p.execs, want)
	}
	for _, bad := range []string{"", "berth-mon 0\n", monStateVersion + "\nstate {}\n", monStateVersion + "\nctr x\n", monStateVersion + "\npod %zz 1 2 3 4 5 6\n", monStateVersion + "\nxexec 1 2 3\n", monStateVersion + "\nxexec 1 2 3 4 x 1 1 1 1 1 1\n"} {
		if _, err := parseMonState(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}
