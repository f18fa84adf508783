package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// TestExecBadCmd: a command no exec could start is InvalidArgument before
// any work, through ExecSync and Exec alike, and the container goes on.
func TestExecBadCmd(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "execcmd")
	id := e.run(t, pod, podCfg, ctrConfig("sleeper", "sleep", "1000"))
	ctx := framework.Context(t)
	for name, cmd := range map[string][]string{
		"none":          nil,
		"empty program": {""},
		"empty first":   {"", "echo", "hi"},
		"NUL":           {"echo", "a\x00b"},
	} {
		_, err := e.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
		if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cmd") {
			t.Errorf("ExecSync %s %q: %v, want InvalidArgument naming the cmd", name, cmd, err)
		}
		_, err = e.d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: cmd, Stdout: true})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("Exec %s %q: %v, want InvalidArgument", name, cmd, err)
		}
	}
	if out := e.execSync(t, id, "echo", "still-here"); strings.TrimSpace(string(out.Stdout)) != "still-here" || out.ExitCode != 0 {
		t.Errorf("exec after the refusals: %q exit %d", out.Stdout, out.ExitCode)
	}
}

// TestExecSyncOutputCap: a command printing far more than a CRI message
// holds succeeds through a client with the kubelet's 16 MiB receive
// limit; the reply keeps the beginning of each stream (stderr's few bytes
// too) within the limit, and berthd's memory grows by a bounded amount.
func TestExecSyncOutputCap(t *testing.T) {
	e := newCtrEnv(t)
	pod, podCfg := e.pod(t, "bigexec")
	id := e.run(t, pod, podCfg, ctrConfig("sleeper", "sleep", "1000"))
	const kubeletMaxMsg = 16 << 20 // the kubelet's and crictl's receive limit
	conn, err := grpc.NewClient(e.d.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(kubeletMaxMsg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	pid := berthdPid(t, e.d.Socket)
	before := procStatusKiB(t, pid, "VmHWM")

	const printed = 40 << 20
	for _, c := range []struct {
		name       string
		cmd        []string
		wantStderr string
	}{
		{"stdout only", []string{"head", "-c", strconv.Itoa(printed), "/dev/zero"}, ""},
		{"stderr after", []string{"sh", "-c", "head -c " + strconv.Itoa(printed) + " /dev/zero; echo oops >&2"}, "oops\n"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		resp, err := client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: c.cmd, Timeout: 240})
		cancel()
		if err != nil {
			t.Fatalf("%s: ExecSync of %d bytes: %v", c.name, printed, err)
		}
		total := len(resp.Stdout) + len(resp.Stderr)
		if resp.ExitCode != 0 || total > kubeletMaxMsg-64 || total < 15<<20 || string(resp.Stderr) != c.wantStderr || bytes.Count(resp.Stdout, []byte{0}) != len(resp.Stdout) {
			t.Errorf("%s: exit %d, %d bytes of stdout, stderr %q; want exit 0, under %d bytes in all, stderr %q", c.name, resp.ExitCode, len(resp.Stdout), resp.Stderr, kubeletMaxMsg, c.wantStderr)
		}
		if size := proto.Size(resp); size > kubeletMaxMsg {
			t.Errorf("%s: reply of %d bytes", c.name, size)
		}
	}
	// A generous bound: the output is held once, cut to the limit, plus
	// its encoding for gRPC; before, one call grew berthd by ~100 MB.
	grown := procStatusKiB(t, pid, "VmHWM") - before
	t.Logf("berthd peak RSS grew by %d KiB over two ExecSyncs of %d MiB", grown, printed>>20)
	if grown > 128<<10 {
		t.Errorf("berthd peak RSS grew by %d KiB", grown)
	}
	if !strings.Contains(e.d.Logs(), "ExecSync output cut") {
		t.Error("berthd did not say what it cut")
	}
}

// berthdPid is the pid of the berthd serving socket (its peer's
// credentials).
func berthdPid(t *testing.T, socket string) int {
	t.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	return int(cred.Pid)
}

// procStatusKiB reads a "<field>: <n> kB" line of /proc/<pid>/status.
func procStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
