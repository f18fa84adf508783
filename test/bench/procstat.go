package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What make bench tells the benchmarks about the berthd it started; empty
// when measuring a runtime someone else runs (the restart and the berthd
// columns of churn are then left out).
var (
	berthdPidfile = flag.String("berthd-pidfile", "", "file with the pid of the berthd under test (make bench sets it); the scale benchmark restarts that berthd and writes the new pid here")
	berthdMetrics = flag.String("berthd-metrics", "", "URL of the berthd's Prometheus metrics (make bench sets it), for its goroutine count")
)

// procStats is what the churn benchmark watches of a process.
type procStats struct {
	mem        memUsage
	fds        int
	threads    int
	goroutines int // -1 when the process does not tell
}

func readProcStats(pid int) (procStats, error) {
	s := procStats{goroutines: -1}
	var err error
	if s.mem, err = readMemUsage(pid); err != nil {
		return s, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.threads, err = parseThreads(string(st))
	return s, err
}

// berthdPid is the pid in -berthd-pidfile, 0 without one.
func berthdPid() (int, error) {
	if *berthdPidfile == "" {
		return 0, nil
	}
	b, err := os.ReadFile(*berthdPidfile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// metricsClient keeps no connection open, which berthd would count as an
// fd of its own.
var metricsClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// berthdGoroutines reads go_goroutines from the berthd's metrics, -1 when
// it cannot.
func berthdGoroutines(ctx context.Context) int {
	return int(berthdGauges(ctx, "go_goroutines")[0])
}

// berthdGauges reads gauges from berthd's metrics, each -1 when it cannot.
func berthdGauges(ctx context.Context, names ...string) []float64 {
	out := make([]float64, len(names))
	for i := range out {
		out[i] = -1
	}
	if *berthdMetrics == "" {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *berthdMetrics, nil)
	if err != nil {
		return out
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out
	}
	for i, n := range names {
		if v, ok := parsePromGauge(string(b), n); ok {
			out[i] = v
		}
	}
	return out
}

// cmdline is a process's arguments.
func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// flagValue is the value of --name in args (either "--name v" or
// "--name=v").
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// shimsOf are the pids of the berth-shims whose state dir is under state
// (those of one berthd, not other runtimes' on the node).
func shimsOf(state string) []int {
	return berthShims(func(args []string) bool {
		sd := flagValue(args, "--state-dir")
		return sd != "" && strings.HasPrefix(sd, state+"/")
	})
}

// berthShims are the pids of the running berth-shims whose command line
// keep accepts.
func berthShims(keep func(args []string) bool) []int {
	var out []int
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err != nil || strings.TrimSpace(string(b)) != "berth-shim" {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(c)))
		if keep(cmdline(pid)) {
			out = append(out, pid)
		}
	}
	return out
}

// exited tells whether pid is gone or a zombie (its parent, the shell of
// make bench, has not reaped it).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}
