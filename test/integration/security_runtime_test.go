package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moby/sys/capability"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/spec"
)

// The security context fields of issue 7 through the whole runtime: a CRI
// request turned into a spec by runtime/spec, run by the container init,
// observed from inside the container.

// capMask is the bit mask of the named capabilities ("CAP_CHOWN").
func capMask(names []string) uint64 {
	byName := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		byName["CAP_"+strings.ToUpper(c.String())] = c
	}
	var m uint64
	for _, n := range names {
		m |= 1 << uint(byName[n])
	}
	return m
}

// statusMask reads a capability line ("CapBnd") of /proc/self/status output.
func statusMask(t *testing.T, out, field string) uint64 {
	t.Helper()
	m := regexp.MustCompile(field + `:\s+([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in:\n%s", field, out)
	}
	v, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// runSecure runs script in a container made from a CRI security context,
// in a pod whose security context and sysctls are given.
func runSecure(t *testing.T, e *runtimeEnv, name string, sc *runtimeapi.LinuxContainerSecurityContext, pod *runtimeapi.LinuxPodSandboxConfig, script string) ran {
	t.Helper()
	podDir := filepath.Join(e.dir, "pod-"+name)
	ns := pinNamespaces(t, podDir, "pod-host")
	b := e.bundle(t, name)
	root, err := os.OpenRoot(filepath.Join(b, "rootfs"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if sc.NamespaceOptions == nil {
		sc.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	}
	s, err := spec.Generate(spec.Input{
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Command:  []string{"sh", "-c", script},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: sc},
		},
		Sandbox:     &runtimeapi.PodSandboxConfig{Hostname: "pod-host", Linux: pod},
		Image:       &imagespec.ImageConfig{Env: []string{"PATH=/bin"}},
		RootFS:      root.FS(),
		RootPath:    "rootfs",
		Namespaces:  ns,
		CgroupsPath: e.cgParent + "/" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, output := e.create(t, b, s)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	r := ran{status: st}
	r.stdout, r.stderr = output()
	return r
}

const capProbe = "grep -E '^(Cap(Eff|Bnd)|NoNewPrivs|Seccomp):' /proc/self/status"

func TestSecurityContextCapabilities(t *testing.T) {
	e := newRuntimeEnv(t)
	all := capMask(spec.AllCapabilities())
	def := capMask(spec.DefaultCapabilities)
	adminBit := capMask([]string{"CAP_SYS_ADMIN"})
	for _, tc := range []struct {
		name      string
		add, drop []string
		want      uint64
	}{
		{"default", nil, nil, def},
		{"add-net-admin", []string{"NET_ADMIN"}, nil, def | capMask([]string{"CAP_NET_ADMIN"})},
		{"drop-chown", nil, []string{"CHOWN"}, def &^ capMask([]string{"CAP_CHOWN"})},
		{"drop-all", nil, []string{"ALL"}, 0},
		{"add-all", []string{"ALL"}, nil, all},
		{"add-all-drop-admin", []string{"ALL"}, []string{"SYS_ADMIN"}, all &^ adminBit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runSecure(t, e, "caps-"+tc.name, &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{AddCapabilities: tc.add, DropCapabilities: tc.drop},
			}, nil, capProbe)
			if got := statusMask(t, r.stdout, "CapBnd"); got != tc.want {
				t.Errorf("CapBnd %#x, want %#x", got, tc.want)
			}
			// Root: the effective set is the bounding set.
			if got := statusMask(t, r.stdout, "CapEff"); got != tc.want {
				t.Errorf("CapEff %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestSecurityContextPrivileged(t *testing.T) {
	e := newRuntimeEnv(t)
	privPod := &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
	script := capProbe + `
awk '$2=="/sys" || $2=="/proc/sys" || $2=="/sys/fs/cgroup" {print "mount " $2 " " $4}' /proc/mounts
echo "keys=$(stat -c %t:%T /proc/keys)"
ls /dev/loop-control /dev/kmsg >/dev/null 2>&1 && echo hostdevs=yes || echo hostdevs=no`
	r := runSecure(t, e, "priv", &runtimeapi.LinuxContainerSecurityContext{
		Privileged: true, Seccomp: &runtimeapi.SecurityProfile{},
	}, privPod, script)
	if got, want := statusMask(t, r.stdout, "CapBnd"), capMask(spec.AllCapabilities()); got != want {
		t.Errorf("CapBnd %#x, want all %#x", got, want)
	}
	for _, want := range []string{"Seccomp:\t0\n", "mount /sys rw,", "hostdevs=yes\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("privileged: output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	for _, bad := range []string{"mount /proc/sys ro", "keys=1:3"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("privileged: output has %q:\n%s", bad, r.stdout)
		}
	}

	// The same pod's unprivileged container keeps the defaults.
	r = runSecure(t, e, "unpriv", &runtimeapi.LinuxContainerSecurityContext{}, privPod, script)
	for _, want := range []string{"mount /sys ro,", "mount /proc/sys ro,", "keys=1:3\n", "hostdevs=no\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("unprivileged: output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
}

func TestSecurityContextUsers(t *testing.T) {
	e := newRuntimeEnv(t)
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		want string
	}{
		{"run-as-user", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000)},
			"uid=1000 gid=1000 groups=1000 2000\n"},
		{"run-as-username", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody"},
			"uid=65534 gid=65534 groups=65534\n"},
		{"run-as-group", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(3000)},
			"uid=1000 gid=3000 groups=3000 2000\n"},
		{"supplemental-merge", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234, 5678}},
			"uid=1000 gid=1000 groups=1000 1234 2000 5678\n"},
		{"supplemental-strict", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234},
			SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			"uid=1000 gid=1000 groups=1000 1234\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runSecure(t, e, "user-"+tc.name, tc.sc, nil, `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"`)
			if r.stdout != tc.want {
				t.Errorf("got %q, want %q (stderr %q)", r.stdout, tc.want, r.stderr)
			}
		})
	}
}

func TestSecurityContextFilesystemAndPrivileges(t *testing.T) {
	e := newRuntimeEnv(t)
	r := runSecure(t, e, "fs", &runtimeapi.LinuxContainerSecurityContext{
		ReadonlyRootfs: true,
		NoNewPrivs:     true,
		MaskedPaths:    []string{"/etc/layer"},
		ReadonlyPaths:  []string{"/dev/shm"},
	}, &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}}, capProbe+`
touch /x 2>&1
echo "layer=$(cat /etc/layer)"
touch /dev/shm/x 2>&1
touch /tmp/x 2>&1 && echo tmp=writable
echo "shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced)"
echo "keys=$(stat -c %t:%T /proc/keys)"`)
	for _, want := range []string{
		"NoNewPrivs:\t1\n",
		"touch: /x: Read-only file system\n",
		"layer=\n",
		"touch: /dev/shm/x: Read-only file system\n",
		"touch: /tmp/x: Read-only file system\n",
		"shm_rmid_forced=1\n",
		// The request's masked paths replace the defaults.
		"keys=0:0\n",
	} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
}

// The kubelet sends a pod's SELinux options whatever the node (the node e2e
// suite's emptyDir and FSGroup pods set level s0); on a node without SELinux
// a pod and its container naming them run, unlabelled, as with containerd.
func TestSELinuxOptionsIgnoredWithoutSELinux(t *testing.T) {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/selinux", &st) == nil && st.Type == unix.SELINUX_MAGIC {
		t.Skip("this node runs SELinux: berth refuses labels it cannot apply")
	}
	e := newCtrEnv(t)
	podCfg := e.podConfig("selinux")
	podCfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		SelinuxOptions: &runtimeapi.SELinuxOption{Level: "s0"},
	}
	pod := runPod(t, e.d, podCfg)
	t.Cleanup(func() { removePod(t, e.d, pod) })
	cfg := ctrConfig("c", "echo", "ran")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		SelinuxOptions: &runtimeapi.SELinuxOption{Level: "s0:c1,c2", Type: "container_t"},
	}}
	id := e.run(t, pod, podCfg, cfg)
	if got := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 2*time.Minute); got.GetExitCode() != 0 {
		t.Errorf("container with SELinux options exited %d (%s)", got.GetExitCode(), got.GetMessage())
	}
}
