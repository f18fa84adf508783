package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The parts of a standalone kubelet (static pods, no API server) that the
// host's kubelet test (test/integration) and the VM's (test/vm, against
// the installed service) both run it with.

// kubeletSysctls are what the kubelet sets on start-up when
// protectKernelDefaults is false (setupKernelTunables).
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// SaveKubeletSysctls reads the sysctls the kubelet will set; the function
// it returns writes them back, failing t for one it could not.
func SaveKubeletSysctls(t testing.TB) (restore func()) {
	t.Helper()
	saved := map[string]string{}
	for _, s := range kubeletSysctls {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err != nil {
			t.Fatalf("read sysctl %s: %v", s, err)
		}
		saved[s] = strings.TrimSpace(string(b))
	}
	return func() {
		for _, s := range kubeletSysctls {
			if err := os.WriteFile("/proc/sys/"+s, []byte(saved[s]), 0o644); err != nil {
				t.Errorf("restore sysctl %s=%s: %v", s, saved[s], err)
			}
		}
	}
}

// KubeletDirs are a test kubelet's own dirs, all below Dir.
type KubeletDirs struct {
	Dir           string
	Root          string // --root-dir
	Manifests     string // staticPodPath
	PodLogs       string // podLogsDir
	ContainerLogs string // BERTH_KUBELET_CONTAINER_LOGS_DIR
}

// MakeKubeletDirs makes the kubelet's dirs below dir.
func MakeKubeletDirs(t testing.TB, dir string) KubeletDirs {
	t.Helper()
	k := KubeletDirs{
		Dir: dir, Root: filepath.Join(dir, "root"), Manifests: filepath.Join(dir, "manifests"),
		PodLogs: filepath.Join(dir, "pod-logs"), ContainerLogs: filepath.Join(dir, "container-logs"),
	}
	for _, p := range []string{k.Root, k.Manifests, k.PodLogs, k.ContainerLogs} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// KubeletConfig is what differs between the tests' kubelets.
type KubeletConfig struct {
	Endpoint     string // the CRI socket, a unix:// URL
	CgroupDriver string // cgroupfs or systemd
	CgroupRoot   string // empty: the kubelet's default
	HealthzPort  int
}

// Write writes the kubelet's config file into k.Dir, extra (YAML) at its
// end, and returns its path. The kubelet serves nothing but healthz on
// 127.0.0.1, checks its manifests every second, and evicts nothing and
// collects no image (a busy test node is no reason to).
func (k KubeletDirs) Write(t testing.TB, c KubeletConfig, extra string) string {
	t.Helper()
	root := ""
	if c.CgroupRoot != "" {
		root = "cgroupRoot: " + c.CgroupRoot + "\n"
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %[1]s
fileCheckFrequency: 1s
syncFrequency: 5s
containerRuntimeEndpoint: %[2]s
imageServiceEndpoint: %[2]s
cgroupDriver: %[3]s
%[4]scgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
enableServer: false
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[5]d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: %[6]s
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, k.Manifests, c.Endpoint, c.CgroupDriver, root, c.HealthzPort, k.PodLogs) + extra
	path := filepath.Join(k.Dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Command is the kubelet bin with the config file at configPath, its
// containers' logs in k.ContainerLogs; it dies with the test.
func (k KubeletDirs) Command(bin, configPath string) *exec.Cmd {
	cmd := exec.Command(bin, "--config", configPath, "--root-dir", k.Root, "--v", "2")
	cmd.Env = append(os.Environ(), "BERTH_KUBELET_CONTAINER_LOGS_DIR="+k.ContainerLogs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
