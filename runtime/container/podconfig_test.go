package container

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The sysctls a container's init writes are the pod's, never those of the
// CreateContainer request's sandbox_config.
func TestWithPodSysctls(t *testing.T) {
	req := &runtimeapi.PodSandboxConfig{
		Hostname: "h",
		Linux:    &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.core_pattern": "|/tmp/x"}},
	}
	got := withPodConfig(req, &Pod{Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}})
	if len(got.Linux.Sysctls) != 1 || got.Linux.Sysctls["kernel.shm_rmid_forced"] != "1" || got.Hostname != "h" {
		t.Errorf("got %v", got)
	}
	if req.Linux.Sysctls["kernel.core_pattern"] != "|/tmp/x" {
		t.Error("the request was changed")
	}
	if got := withPodConfig(req, &Pod{}); len(got.Linux.Sysctls) != 0 {
		t.Errorf("a pod without sysctls: %v", got.Linux.Sysctls)
	}
	if got := withPodConfig(nil, &Pod{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}); got.Linux.Sysctls["net.ipv4.ip_forward"] != "1" {
		t.Errorf("no request config: %v", got)
	}
}

// Only a pod recorded privileged runs privileged containers; the request's
// sandbox_config decides only for pods recorded before berth kept it.
func TestWithPodPrivileged(t *testing.T) {
	claims := &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
		SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true},
	}}
	no, yes := false, true
	if withPodConfig(claims, &Pod{Privileged: &no}).GetLinux().GetSecurityContext().GetPrivileged() {
		t.Error("an unprivileged pod became privileged by the request's claim")
	}
	if !claims.Linux.SecurityContext.Privileged {
		t.Error("the request was changed")
	}
	if !withPodConfig(nil, &Pod{Privileged: &yes}).GetLinux().GetSecurityContext().GetPrivileged() {
		t.Error("a privileged pod without a sandbox_config in the request is not privileged")
	}
	if !withPodConfig(claims, &Pod{}).GetLinux().GetSecurityContext().GetPrivileged() {
		t.Error("an old record (no privileged kept) does not take the request's")
	}
}
