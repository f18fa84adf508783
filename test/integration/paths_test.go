package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// Paths and names a request carries, used by berthd as an attacker would
// send them (issue 14.1): none may make berth, as root, write, create,
// chown or mount outside where it belongs, and each refusal is
// InvalidArgument that leaves nothing behind.
func TestRequestPathsStayWhereTheyBelong(t *testing.T) {
	// Where a cgroup_parent with ".." would have put a pod; removed after
	// the env's own cleanup has removed the pods (cleanups run last first).
	escape := fmt.Sprintf("berth-escape-%d", os.Getpid())
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + escape)
		for _, d := range dirs {
			_ = removeCgroupTree(d)
		}
	})
	e := newCtrEnv(t)
	ctx := framework.Context(t)

	t.Run("privileged claimed by the request's sandbox_config", func(t *testing.T) {
		podCfg := e.podConfig("unpriv")
		podCfg.LogDirectory = filepath.Join(e.dir, "logs", "unpriv")
		pod := runPod(t, e.d, podCfg)
		defer removePod(t, e.d, pod)
		// The pod was not made privileged; a CreateContainer whose copy of
		// the pod's config says it was must not get a privileged container.
		forged := proto.Clone(podCfg).(*runtimeapi.PodSandboxConfig)
		forged.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
		cfg := ctrConfig("priv", "sleep", "1000")
		cfg.Linux.SecurityContext.Privileged = true
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: forged})
		if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "privileged pod") {
			t.Errorf("privileged container in an unprivileged pod: %v, want InvalidArgument", err)
		}
		list, _ := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
		if n := len(list.GetContainers()); n != 0 {
			t.Errorf("%d containers left after the refusal", n)
		}
	})

	t.Run("sysctls of the request's sandbox_config", func(t *testing.T) {
		podCfg := e.podConfig("sysctl")
		podCfg.LogDirectory = filepath.Join(e.dir, "logs", "sysctl")
		podCfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "81"}
		pod := runPod(t, e.d, podCfg)
		defer removePod(t, e.d, pod)
		// Not what RunPodSandbox checked and set: the container's init
		// must not write it (it could as well name kernel.core_pattern).
		forged := proto.Clone(podCfg).(*runtimeapi.PodSandboxConfig)
		forged.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
		id := e.run(t, pod, forged, ctrConfig("sysctl", "sleep", "1000"))
		r := e.execSync(t, id, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
		if strings.TrimSpace(string(r.Stdout)) != "81" {
			t.Errorf("ip_unprivileged_port_start in the pod = %q (stderr %q), want the pod's 81", r.Stdout, r.Stderr)
		}
	})

	t.Run("sysctl names that climb out of /proc/sys", func(t *testing.T) {
		for _, name := range []string{"net/../../../../etc/berth-sysctl", "net.ipv4..ip_forward", "net/ipv4/./ip_forward"} {
			podCfg := e.podConfig("sysctl-bad")
			podCfg.Linux.Sysctls = map[string]string{name: "1"}
			_, err := e.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
			if grpcCode(err) != codes.InvalidArgument {
				t.Errorf("sysctl %q: %v, want InvalidArgument", name, err)
			}
		}
		if _, err := os.Stat("/etc/berth-sysctl"); !os.IsNotExist(err) {
			t.Errorf("/etc/berth-sysctl: %v", err)
		}
		e.noPods(t, "after the refused sysctls")
	})

	t.Run("cgroup_parent with ..", func(t *testing.T) {
		for _, parent := range []string{e.cgroupParent + "/../../" + escape, "/../" + escape, e.cgroupParent + "/./x"} {
			podCfg := e.podConfig("cg")
			podCfg.Linux.CgroupParent = parent
			_, err := e.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
			if grpcCode(err) != codes.InvalidArgument || !strings.Contains(strings.ReplaceAll(err.Error(), "_", " "), "cgroup parent") {
				t.Errorf("cgroup parent %q: %v, want InvalidArgument naming the cgroup parent", parent, err)
			}
		}
		if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + escape); len(dirs) != 0 {
			t.Errorf("cgroups made outside the parent: %v", dirs)
		}
		e.noPods(t, "after the refused cgroup parents")
	})

	pod, podCfg := e.pod(t, "paths")

	t.Run("seccomp Localhost profile that is no file", func(t *testing.T) {
		fifo := filepath.Join(e.dir, "profile-fifo")
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/dev/zero", fifo, e.dir} {
			cfg := ctrConfig("seccomp", "true")
			cfg.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: p}
			start := time.Now()
			_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
			if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), p) {
				t.Errorf("profile %s: %v (after %v), want InvalidArgument naming it", p, err, time.Since(start))
			}
			e.nothingLeft(t)
		}
	})

	t.Run("bind mount source that is a symlink", func(t *testing.T) {
		// To a file that does not exist: refused, nothing made there.
		missing := filepath.Join(e.dir, "made-by-berth")
		link := filepath.Join(e.dir, "link-to-missing")
		if err := os.Symlink(missing, link); err != nil {
			t.Fatal(err)
		}
		cfg := ctrConfig("mnt", "true")
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: link}}
		_, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("symlink to a missing file: %v, want InvalidArgument", err)
		}
		if _, err := os.Lstat(missing); !os.IsNotExist(err) {
			t.Errorf("berth made the symlink's target: %v", err)
		}
		e.nothingLeft(t)

		// To a host file: bound as the kubelet resolves it (by design, as
		// runc does), but never chowned, chmodded, relabelled or
		// replaced, and the link stays a link.
		host := filepath.Join(e.dir, "host-secret")
		if err := os.WriteFile(host, []byte("host\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(host, 4321, 4321); err != nil {
			t.Fatal(err)
		}
		link = filepath.Join(e.dir, "link-to-host")
		if err := os.Symlink(host, link); err != nil {
			t.Fatal(err)
		}
		cfg = ctrConfig("mnt", "sh", "-c", "cat /data/f; sleep 1000")
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data/f", HostPath: link, Readonly: true, SelinuxRelabel: true}}
		cfg.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
		id := e.run(t, pod, podCfg, cfg)
		r := e.execSync(t, id, "sh", "-c", "ls -ln /data/f; echo x >> /data/f")
		if r.ExitCode == 0 {
			t.Errorf("a read-only bind was written: %q %q", r.Stdout, r.Stderr)
		}
		var st unix.Stat_t
		if err := unix.Stat(host, &st); err != nil || st.Uid != 4321 || st.Gid != 4321 || st.Mode&0o7777 != 0o600 {
			t.Errorf("host file changed: uid %d gid %d mode %o (%v)", st.Uid, st.Gid, st.Mode&0o7777, err)
		}
		if b, _ := os.ReadFile(host); string(b) != "host\n" {
			t.Errorf("host file content %q", b)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link is no longer a symlink: %v %v", fi, err)
		}
	})
}
