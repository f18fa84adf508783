package integration

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
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
