package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// usernsHostID is where the test pods' ids start on the node.
const usernsHostID = 200000

func usernsOptions(hostID uint32) *runtimeapi.UserNamespace {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: hostID, Length: 65536}}
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
}

// usernsPod is a pod config with its own user namespace (and, with
// sharedPID, a pause process in it).
func (e *ctrEnv) usernsPod(name string, sharedPID bool) *runtimeapi.PodSandboxConfig {
	cfg := e.podConfig(name)
	cfg.LogDirectory = filepath.Join(e.dir, "logs", name)
	ns := cfg.Linux.SecurityContext.NamespaceOptions
	ns.UsernsOptions = usernsOptions(usernsHostID)
	if sharedPID {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	return cfg
}

func usernsCtr(name string, pod *runtimeapi.PodSandboxConfig, cmd ...string) *runtimeapi.ContainerConfig {
	c := ctrConfig(name, cmd...)
	c.Linux.SecurityContext.NamespaceOptions = pod.Linux.SecurityContext.NamespaceOptions
	return c
}

// A pod with its own user namespace: the container's root is the node's
// usernsHostID, and still owns the image's files (id-mapped layers), its
// own new files, and a volume's files (an id-mapped bind mount); exec
// runs in the same namespace; /sys, /proc and devices work.
func TestUserNamespacePod(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)
	st, err := e.d.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.RuntimeHandlers[0].GetFeatures().GetUserNamespaces() {
		// Then a pod with one is refused, saying why.
		_, err := e.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: e.usernsPod("userns", true)})
		if grpcCode(err) != codes.FailedPrecondition {
			t.Errorf("RunPodSandbox with a user namespace where none can be made: %v, want FailedPrecondition", err)
		}
		// Only a test VM's kernel may lack them (Debian 12's Linux 6.1 has
		// no id-mapped tmpfs); this host's must not.
		if os.Getenv("BERTH_VM_VARIANT") == "" {
			t.Fatalf("runtime handler does not report user namespaces:\n%s", e.d.Logs())
		}
		t.Skipf("no user namespaces in this VM: %v", err)
	}

	podCfg := e.usernsPod("userns", true)
	podID := runPod(t, e.d, podCfg)
	ps, err := e.d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	if got := ps.Status.GetLinux().GetNamespaces().GetOptions().GetUsernsOptions(); got.GetMode() != runtimeapi.NamespaceMode_POD || got.GetUids()[0].GetHostId() != usernsHostID {
		t.Errorf("pod status user namespace options = %v", got)
	}

	vol := filepath.Join(e.dir, "userns-vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "hostfile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := usernsCtr("userns-ctr", podCfg, "sleep", "1000")
	m := podCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: vol, UidMappings: m.Uids, GidMappings: m.Gids}}
	id := e.run(t, podID, podCfg, cfg)
	e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 10*time.Second)

	check := func(want string, cmd ...string) {
		t.Helper()
		r := e.execSync(t, id, cmd...)
		if got := strings.Join(strings.Fields(string(r.Stdout)), " "); got != want || r.ExitCode != 0 {
			t.Errorf("%v: got %q (exit %d, stderr %q), want %q", cmd, got, r.ExitCode, r.Stderr, want)
		}
	}
	check("0 200000 65536", "cat", "/proc/self/uid_map")
	check("0 200000 65536", "cat", "/proc/self/gid_map")
	check("0 0", "sh", "-c", "echo $(id -u) $(id -g)")
	check("0:0 0:0", "stat", "-c", "%u:%g", "/etc/passwd", "/bin")
	check("0:0", "stat", "-c", "%u:%g", "/vol/hostfile")
	check("0:0", "sh", "-c", "touch /newfile /vol/created && stat -c %u:%g /newfile")
	check("ok", "sh", "-c", "echo x >/dev/null && head -c1 /dev/zero | wc -c | grep -q 1 && echo ok")
	check("eth0 lo", "ls", "/sys/class/net") // sysfs of the pod's network
	check("userns", "hostname")
	// The pause process (PID 1 of the shared PID namespace) runs as nobody
	// of the namespace.
	check("Uid: 65534 65534 65534 65534", "sh", "-c", "grep ^Uid: /proc/1/status")
	// The same through berth-mon, once the pod's shim is idle: it joins
	// the user namespace as the Go shim's spawn does.
	shimPid := inspectPod(t, e.d, podID).Pid
	waitShimExe(t, shimPid, "berth-mon")
	check("0 200000 65536", "cat", "/proc/self/uid_map")
	check("0 0", "sh", "-c", "echo $(id -u) $(id -g)")
	check("userns", "hostname")
	check("Uid: 65534 65534 65534 65534", "sh", "-c", "grep ^Uid: /proc/1/status")
	if exe := shimExe(t, shimPid); exe != "berth-mon" {
		t.Errorf("ExecSync in a user namespace promoted the shim: it runs %s", exe)
	}

	// Seen from the node: a file the container's root made in its rootfs
	// belongs to the namespace's root; one made in the id-mapped volume to
	// the node's root, like the volume's own.
	_, info := e.status(t, id)
	pid := int(info["pid"].(float64))
	var sb syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/proc", strconv.Itoa(pid), "root/newfile"), &sb); err != nil {
		t.Fatal(err)
	} else if sb.Uid != usernsHostID || sb.Gid != usernsHostID {
		t.Errorf("rootfs file owned by %d:%d on the node, want %d", sb.Uid, sb.Gid, usernsHostID)
	}
	if err := syscall.Stat(filepath.Join(vol, "created"), &sb); err != nil {
		t.Fatal(err)
	} else if sb.Uid != 0 || sb.Gid != 0 {
		t.Errorf("volume file owned by %d:%d on the node, want 0:0", sb.Uid, sb.Gid)
	}

	// A berthd killed and started again finds the pod and its container,
	// and exec still runs in the pod's user namespace.
	e.d.Kill()
	e.restart(t)
	check("0 200000 65536", "cat", "/proc/self/uid_map")

	removePod(t, e.d, podID)
	e.nothingLeft(t)
	for _, mp := range mountsBelow(e.dir) {
		if strings.Contains(mp, "idmap") {
			t.Errorf("id-mapped mount left: %s", mp)
		}
	}
}

// What the kernel, Kubernetes or berth cannot do is refused, and leaves
// nothing behind.
func TestUserNamespaceBadInput(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)
	two := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 1000}, {ContainerId: 1000, HostId: 5000, Length: 1000}}
	notRoot := []*runtimeapi.IDMapping{{ContainerId: 1, HostId: 1000, Length: 1000}}
	for name, mod := range map[string]func(*runtimeapi.PodSandboxConfig){
		"mode-container": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}
		},
		"mode-target": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}
		},
		"two-mappings": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: two, Gids: two}
		},
		"root-unmapped": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: notRoot, Gids: notRoot}
		},
		"no-mappings": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
		},
		"host-network": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOptions(usernsHostID)
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		},
	} {
		cfg := e.podConfig("bad-" + name)
		mod(cfg)
		_, err := e.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("%s: RunPodSandbox = %v, want InvalidArgument", name, err)
		}
	}
	if resp, err := e.d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(resp.Items) != 0 {
		t.Errorf("pods after refused runs: %v %v", resp, err)
	}

	// A container must run in its pod's user namespace, with its maps.
	st, err := e.d.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.RuntimeHandlers[0].GetFeatures().GetUserNamespaces() && os.Getenv("BERTH_VM_VARIANT") != "" {
		t.Skip("no user namespaces in this VM: no pod to create containers in")
	}
	podCfg := e.usernsPod("userns-bad-ctr", false)
	podID := runPod(t, e.d, podCfg)
	other := usernsCtr("other-map", podCfg, "true")
	other.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: usernsOptions(300000)}
	node := usernsCtr("node-userns", podCfg, "true")
	node.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	priv := usernsCtr("privileged", podCfg, "true")
	priv.Linux.SecurityContext.Privileged = true
	for _, c := range []*runtimeapi.ContainerConfig{other, node, priv} {
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: podCfg})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("%s: CreateContainer = %v, want InvalidArgument", c.Metadata.Name, err)
		}
	}
	removePod(t, e.d, podID)
	e.nothingLeft(t)
}
