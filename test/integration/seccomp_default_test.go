package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// seccomp_default confines a container whose request names no profile;
// an explicit Unconfined still wins. A pod asking for an AppArmor profile
// on this node (no AppArmor) is refused before anything is made.
func TestSeccompDefaultAndPodLSM(t *testing.T) {
	e := newCtrEnv(t)
	if err := e.d.Stop(t); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "config.toml"), []byte("seccomp_default = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.restart(t)
	// Registered after the restart, so it runs before this daemon stops.
	t.Cleanup(func() {
		resp, err := e.d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return
		}
		for _, p := range resp.Items {
			removePod(t, e.d, p.Id)
		}
	})

	podID, podCfg := e.pod(t, "seccomp")
	seccompOf := func(cfg *runtimeapi.ContainerConfig) string {
		t.Helper()
		id := e.run(t, podID, podCfg, cfg)
		out := e.execSync(t, id, "grep", "Seccomp:", "/proc/self/status")
		return strings.Join(strings.Fields(string(out.Stdout)), " ")
	}
	if got := seccompOf(ctrConfig("unset", "sleep", "300")); got != "Seccomp: 2" {
		t.Errorf("no profile requested with seccomp_default: %q, want filtered (2)", got)
	}
	unconfined := ctrConfig("unconfined", "sleep", "300")
	unconfined.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	if got := seccompOf(unconfined); got != "Seccomp: 0" {
		t.Errorf("Unconfined requested: %q, want 0", got)
	}

	bad := e.podConfig("apparmor")
	bad.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "my-profile"},
	}}
	_, err := e.d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: bad})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "AppArmor") {
		t.Errorf("pod with an AppArmor profile: %v, want InvalidArgument naming AppArmor", err)
	}
	pods, err := e.d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Errorf("refused pod left a record: %d pods", len(pods.Items))
	}
}
