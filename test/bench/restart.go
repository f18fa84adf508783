package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type restartTimes struct {
	stop   time.Duration // SIGTERM until the process ended
	status time.Duration // exec until Status answers with every condition true
	all    time.Duration // exec until every pod of ids is listed ready and its containers running
}

// restartBerthd stops the berthd of -berthd-pidfile with SIGTERM and
// starts it again as it was started (binary, arguments, environment,
// directory, stderr file), then polls it on fresh connections (a client
// connection's reconnect backoff would add its own wait) until ready.
// The pidfile gets the new pid; e's clients are moved to a new connection.
func restartBerthd(e *env, ids []string, wantContainers int) (restartTimes, error) {
	return restartBerthdAs(e, "", ids, wantContainers)
}

// restartBerthdAs is restartBerthd with the binary at exe instead (""
// keeps the one running): the list benchmark alternates builds this way.
func restartBerthdAs(e *env, as string, ids []string, wantContainers int) (restartTimes, error) {
	var r restartTimes
	pid, err := berthdPid()
	if err != nil || pid <= 0 {
		return r, fmt.Errorf("berthd pid: %v", err)
	}
	args := cmdline(pid)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || len(args) == 0 {
		return r, fmt.Errorf("berthd %d: command line: %v", pid, err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	if as != "" {
		exe = as
	}
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	logPath, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", pid))

	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return r, fmt.Errorf("stop berthd %d: %w", pid, err)
	}
	for !exited(pid) {
		if time.Since(start) > time.Minute {
			return r, fmt.Errorf("berthd %d still runs a minute after SIGTERM", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.stop = time.Since(start)

	cmd := exec.Command(exe, args[1:]...)
	cmd.Dir = cwd
	if len(environ) > 0 {
		cmd.Env = strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00")
	}
	if strings.HasPrefix(logPath, "/") {
		if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			defer f.Close()
			cmd.Stderr = f
		}
	}
	// Its own process group: a ^C of make bench reaches it through the
	// cleanup (pidfile), after the pods are removed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start berthd: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(*berthdPidfile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return r, err
	}

	for {
		if time.Since(started) > 5*time.Minute {
			return r, fmt.Errorf("berthd not ready 5 minutes after its start")
		}
		if exited(cmd.Process.Pid) {
			return r, fmt.Errorf("berthd exited after its restart (log %s)", logPath)
		}
		conn, ready, all := pollReady(e.ctx, e.endpoint, ids, wantContainers)
		if ready && r.status == 0 {
			r.status = time.Since(started)
		}
		if all {
			r.all = time.Since(started)
			e.runtime = runtimeapi.NewRuntimeServiceClient(conn)
			e.images = runtimeapi.NewImageServiceClient(conn)
			return r, nil
		}
		if conn != nil {
			conn.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pollReady asks a fresh connection whether the runtime is ready and lists
// every pod of ids ready with wantContainers running; the connection is
// returned for reuse.
func pollReady(ctx context.Context, endpoint string, ids []string, wantContainers int) (conn *grpc.ClientConn, ready, all bool) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, false, false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return conn, false, false
	}
	for _, c := range st.GetStatus().GetConditions() {
		if !c.Status {
			return conn, false, false
		}
	}
	pods, ctrs, err := podsReady(ctx, rt, ids)
	return conn, true, err == nil && pods == len(ids) && ctrs >= wantContainers
}
