package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/moby/sys/mountinfo"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

var imageFS = fstest.MapFS{
	"etc/passwd": {Data: []byte("root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001:App:/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\nbroken:x:notanumber:1::/:/bin/sh\n")},
	"etc/group":  {Data: []byte("root:x:0:\napp:x:1001:\nextra:x:2000:app,web\nweb:x:33:\nvideo:x:44:web\n")},
}

func basicInput() Input {
	return Input{
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			}},
		},
		Sandbox:     &runtimeapi.PodSandboxConfig{Hostname: "pod-host"},
		Image:       &imagespec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/img/bin", "LANG=C"}},
		RootFS:      imageFS,
		RootPath:    "/run/x/rootfs",
		Namespaces:  Namespaces{Net: "/ns/net", IPC: "/ns/ipc", UTS: "/ns/uts", PID: "/ns/pid"},
		CgroupsPath: "/berth/pod/c",
	}
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		command, args, ep, cmd []string
		want                   []string
		wantErr                bool
	}{
		{name: "image only", ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/ep", "a"}},
		{name: "cmd only image", cmd: []string{"sh", "-c", "x"}, want: []string{"sh", "-c", "x"}},
		{name: "args replace cmd", args: []string{"b"}, ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/ep", "b"}},
		{name: "command replaces entrypoint and drops cmd", command: []string{"/c"}, ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/c"}},
		{name: "command and args", command: []string{"/c"}, args: []string{"x", "y"}, ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/c", "x", "y"}},
		{name: "args without entrypoint", args: []string{"/bin/true"}, cmd: []string{"a"}, want: []string{"/bin/true"}},
		{name: "nothing", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Args(tc.command, tc.args, tc.ep, tc.cmd)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err %v, want invalid argument", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

func kv(k, v string) *runtimeapi.KeyValue { return &runtimeapi.KeyValue{Key: k, Value: []byte(v)} }

func TestEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		image    []string
		req      []*runtimeapi.KeyValue
		hostname string
		home     string
		want     []string
	}{
		{name: "defaults", want: []string{DefaultPath, "HOME=/"}},
		{name: "image path kept", image: []string{"PATH=/x", "A=1"}, hostname: "h", home: "/root",
			want: []string{"PATH=/x", "A=1", "HOSTNAME=h", "HOME=/root"}},
		{name: "request wins in place", image: []string{"A=1", "B=2"}, req: []*runtimeapi.KeyValue{kv("B", "3"), kv("C", "4=5")},
			want: []string{DefaultPath, "A=1", "B=3", "C=4=5", "HOME=/"}},
		{name: "request home kept", req: []*runtimeapi.KeyValue{kv("HOME", "/h")}, home: "/root",
			want: []string{DefaultPath, "HOME=/h"}},
		{name: "image home kept", image: []string{"HOME=/img"}, home: "/root",
			want: []string{DefaultPath, "HOME=/img"}},
		{name: "request overrides hostname", req: []*runtimeapi.KeyValue{kv("HOSTNAME", "mine")}, hostname: "h",
			want: []string{DefaultPath, "HOSTNAME=mine", "HOME=/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Env(tc.image, tc.req, tc.hostname, tc.home); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func i64v(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }

func TestUser(t *testing.T) {
	for _, tc := range []struct {
		name      string
		imageUser string
		sc        *runtimeapi.LinuxContainerSecurityContext
		fs        fstest.MapFS
		uid, gid  uint32
		gids      []uint32
		home      string
		err       bool
	}{
		{name: "default root", uid: 0, gid: 0, gids: []uint32{0}, home: "/root"},
		{name: "image uid", imageUser: "1000", uid: 1000, gid: 1001, gids: []uint32{1001, 2000}, home: "/home/app"},
		{name: "image uid unknown", imageUser: "4242", uid: 4242, gid: 0, gids: []uint32{0}},
		{name: "image uid:gid", imageUser: "1000:44", uid: 1000, gid: 44, gids: []uint32{44, 2000}, home: "/home/app"},
		{name: "image name", imageUser: "web", uid: 33, gid: 33, gids: []uint32{33, 2000, 44}, home: "/var/www"},
		{name: "image name:group", imageUser: "app:video", uid: 1000, gid: 44, gids: []uint32{44, 2000}, home: "/home/app"},
		{name: "image uid:groupname", imageUser: "4242:extra", uid: 4242, gid: 2000, gids: []uint32{2000}},
		{name: "unknown name", imageUser: "nobody", err: true},
		{name: "unknown group", imageUser: "app:nogroup", err: true},
		{name: "names without passwd", imageUser: "app", fs: fstest.MapFS{}, err: true},
		{name: "uid without passwd", imageUser: "7", fs: fstest.MapFS{}, uid: 7, gid: 0, gids: []uint32{0}},
		{name: "run_as_user over image", imageUser: "web", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64v(1000)},
			uid: 1000, gid: 1001, gids: []uint32{1001, 2000}, home: "/home/app"},
		{name: "run_as_user and group", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64v(1000), RunAsGroup: i64v(5)},
			uid: 1000, gid: 5, gids: []uint32{5, 2000}, home: "/home/app"},
		{name: "run_as_username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "web"},
			uid: 33, gid: 33, gids: []uint32{33, 2000, 44}, home: "/var/www"},
		{name: "run_as_group alone", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i64v(5)}, err: true},
		{name: "supplemental merge", imageUser: "1000", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{3000, 2000}},
			uid: 1000, gid: 1001, gids: []uint32{1001, 2000, 3000}, home: "/home/app"},
		{name: "supplemental strict", imageUser: "1000", sc: &runtimeapi.LinuxContainerSecurityContext{
			SupplementalGroups: []int64{3000}, SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			uid: 1000, gid: 1001, gids: []uint32{1001, 3000}, home: "/home/app"},
		{name: "bad supplemental", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{-1}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := imageFS
			if tc.fs != nil {
				fsys = tc.fs
			}
			sc := tc.sc
			if sc == nil {
				sc = &runtimeapi.LinuxContainerSecurityContext{}
			}
			u, err := resolveUser(fsys, sc, tc.imageUser)
			if tc.err {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err %v, want invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.uid || u.GID != tc.gid || !reflect.DeepEqual(u.AdditionalGids, tc.gids) || u.home != tc.home {
				t.Fatalf("got uid %d gid %d gids %v home %q, want %d %d %v %q", u.UID, u.GID, u.AdditionalGids, u.home, tc.uid, tc.gid, tc.gids, tc.home)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	all := AllCapabilities()
	for _, tc := range []struct {
		name    string
		sc      *runtimeapi.LinuxContainerSecurityContext
		want    []string
		ambient []string
		err     bool
	}{
		{name: "default", sc: &runtimeapi.LinuxContainerSecurityContext{}, want: DefaultCapabilities},
		{name: "privileged", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, want: all},
		{name: "add and drop, any spelling", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"NET_ADMIN", "cap_sys_time"}, DropCapabilities: []string{"CAP_KILL", "mknod"}}},
			want: append(without(DefaultCapabilities, "CAP_KILL", "CAP_MKNOD"), "CAP_NET_ADMIN", "CAP_SYS_TIME")},
		{name: "drop all add one", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"CHOWN"}, DropCapabilities: []string{"ALL"}}}, want: []string{"CAP_CHOWN"}},
		{name: "add all", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"CAP_SYS_ADMIN"}}}, want: without(all, "CAP_SYS_ADMIN")},
		{name: "ambient", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}}},
			want: []string{"CAP_NET_BIND_SERVICE"}, ambient: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "unknown", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NOPE"}}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Capabilities(tc.sc)
			if tc.err {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err %v, want invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tc.want)
			slices.Sort(want)
			for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				got = slices.Clone(got)
				slices.Sort(got)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: got %v, want %v", name, got, want)
				}
			}
			if !reflect.DeepEqual(c.Ambient, tc.ambient) || !reflect.DeepEqual(c.Inheritable, tc.ambient) {
				t.Errorf("ambient %v inheritable %v, want %v", c.Ambient, c.Inheritable, tc.ambient)
			}
		})
	}
}

func without(list []string, drop ...string) []string {
	var out []string
	for _, v := range list {
		if !slices.Contains(drop, v) {
			out = append(out, v)
		}
	}
	return out
}

func TestNamespaces(t *testing.T) {
	pod := Namespaces{Net: "/ns/net", IPC: "/ns/ipc", UTS: "/ns/uts", PID: "/ns/pid", TargetPID: "/proc/7/ns/pid"}
	mnt := specs.LinuxNamespace{Type: specs.MountNamespace}
	podNet := []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/ns/net"}, {Type: specs.UTSNamespace, Path: "/ns/uts"}}
	podIPC := specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/ns/ipc"}
	for _, tc := range []struct {
		name     string
		o        *runtimeapi.NamespaceOption
		pod      Namespaces
		cgroupNS bool
		want     []specs.LinuxNamespace
		err      bool
	}{
		{name: "pod default", o: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, pod: pod,
			want: append(append([]specs.LinuxNamespace{mnt}, podNet...), podIPC, specs.LinuxNamespace{Type: specs.PIDNamespace})},
		{name: "shared pid", o: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}, pod: pod,
			want: append(append([]specs.LinuxNamespace{mnt}, podNet...), podIPC, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/ns/pid"})},
		{name: "host everything", o: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE},
			pod: pod, want: []specs.LinuxNamespace{mnt}},
		{name: "target", o: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "x"},
			pod: pod, want: []specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace, Path: "/proc/7/ns/pid"}}},
		{name: "cgroup ns", o: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE},
			cgroupNS: true, want: []specs.LinuxNamespace{mnt, {Type: specs.CgroupNamespace}}},
		{name: "shared pid without pod pid ns", o: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}, pod: Namespaces{Net: "/n", UTS: "/u", IPC: "/i"}, err: true},
		{name: "pod net without netns", o: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, err: true},
		{name: "container network", o: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_CONTAINER}, pod: pod, err: true},
		{name: "target without target", o: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}, pod: Namespaces{Net: "/n", UTS: "/u", IPC: "/i"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := namespaces(tc.o, tc.pod, tc.cgroupNS)
			if tc.err {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err %v, want invalid argument", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestResources(t *testing.T) {
	r, oom, err := resources(&runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 128 << 20,
		OomScoreAdj: -998, CpusetCpus: "0", CpusetMems: "0",
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"memory.high": "1000000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *r.CPU.Period != 100000 || *r.CPU.Quota != 50000 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0" || r.CPU.Mems != "0" {
		t.Errorf("cpu %+v", r.CPU)
	}
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 {
		t.Errorf("memory %+v", r.Memory)
	}
	if *oom != -998 {
		t.Errorf("oom %d", *oom)
	}
	if len(r.HugepageLimits) != 1 || r.HugepageLimits[0].Pagesize != "2MB" || r.Unified["memory.high"] != "1000000" {
		t.Errorf("hugepages %+v unified %v", r.HugepageLimits, r.Unified)
	}
	if len(r.Devices) == 0 || r.Devices[0].Allow {
		t.Errorf("device rules must start with deny all: %+v", r.Devices)
	}

	r, oom, err = resources(&runtimeapi.LinuxContainerResources{})
	if err != nil || r.CPU != nil || r.Memory != nil || oom == nil || *oom != 0 {
		t.Errorf("empty resources gave %+v %v %v", r, oom, err)
	}
	if _, oom, err = resources(nil); err != nil || oom == nil || *oom != 0 {
		t.Errorf("no resources gave oom %v %v, want 0 (not the shim's)", oom, err)
	}
	for name, bad := range map[string]*runtimeapi.LinuxContainerResources{
		"swap below memory": {MemoryLimitInBytes: 100, MemorySwapLimitInBytes: 50},
		"swap alone":        {MemorySwapLimitInBytes: 50},
		"oom out of range":  {OomScoreAdj: 1001},
		"hugepage no size":  {HugepageLimits: []*runtimeapi.HugepageLimit{{Limit: 1}}},
	} {
		if _, _, err := resources(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want invalid argument", name, err)
		}
	}
}

func mountAt(ms []specs.Mount, dst string) *specs.Mount {
	for i := range ms {
		if ms[i].Destination == dst {
			return &ms[i]
		}
	}
	return nil
}

func TestGenerate(t *testing.T) {
	hostDir := t.TempDir()
	real := filepath.Join(hostDir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(hostDir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	in := basicInput()
	in.Pod = PodFiles{Hostname: "/pod/hostname", Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Shm: "/pod/shm"}
	in.Image.User = "app"
	in.Image.WorkingDir = "/img"
	in.Image.Entrypoint = []string{"/bin/sh"}
	in.Config.Args = []string{"-c", "true"}
	in.Config.Envs = []*runtimeapi.KeyValue{kv("A", "b")}
	in.Config.Tty = true
	in.Config.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/data/sub", HostPath: real, Readonly: true},
		{ContainerPath: "/data", HostPath: link, Readonly: true, RecursiveReadOnly: true},
	}
	in.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rw"}}
	in.Config.Linux.SecurityContext.NoNewPrivs = true
	in.Config.Linux.SecurityContext.ReadonlyRootfs = true
	in.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}
	in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}
	in.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 4096}}

	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{"/bin/sh", "-c", "true"}) {
		t.Errorf("args %q", s.Process.Args)
	}
	if s.Process.Cwd != "/img" || !s.Process.Terminal || !s.Process.NoNewPrivileges || !s.Root.Readonly || s.Root.Path != "/run/x/rootfs" {
		t.Errorf("process %+v root %+v", s.Process, s.Root)
	}
	if s.Process.User.UID != 1000 || s.Process.User.GID != 1001 {
		t.Errorf("user %+v", s.Process.User)
	}
	if !reflect.DeepEqual(s.Process.Env, []string{"PATH=/img/bin", "LANG=C", "HOSTNAME=pod-host", "A=b", "HOME=/home/app"}) {
		t.Errorf("env %q", s.Process.Env)
	}
	if s.Hostname != "pod-host" || s.Linux.CgroupsPath != "/berth/pod/c" || s.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
		t.Errorf("hostname %q cgroups %q sysctl %v", s.Hostname, s.Linux.CgroupsPath, s.Linux.Sysctl)
	}
	if !reflect.DeepEqual(s.Linux.MaskedPaths, DefaultMaskedPaths) || !reflect.DeepEqual(s.Linux.ReadonlyPaths, DefaultReadonlyPaths) {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	for dst, want := range map[string]string{
		"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/mqueue": "mqueue", "/sys": "sysfs",
		"/sys/fs/cgroup": "cgroup", "/etc/hosts": "bind", "/etc/hostname": "bind", "/etc/resolv.conf": "bind", "/dev/shm": "bind",
	} {
		m := mountAt(s.Mounts, dst)
		if m == nil || m.Type != want {
			t.Errorf("mount %s: %+v, want type %s", dst, m, want)
		}
	}
	if m := mountAt(s.Mounts, "/etc/hosts"); m == nil || !slices.Contains(m.Options, "ro") {
		t.Errorf("/etc/hosts of a read-only rootfs must be read-only: %+v", m)
	}
	if m := mountAt(s.Mounts, "/dev/shm"); m == nil || m.Source != "/pod/shm" {
		t.Errorf("/dev/shm %+v", m)
	}
	if m := mountAt(s.Mounts, "/sys"); m == nil || !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys must be read-only: %+v", m)
	}
	data, sub := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/data" }),
		slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/data/sub" })
	if data < 0 || sub < 0 || data > sub {
		t.Fatalf("/data must come before /data/sub: %v", s.Mounts)
	}
	if m := s.Mounts[data]; m.Source != real || !reflect.DeepEqual(m.Options, []string{"rbind", "rprivate", "ro", "rro"}) {
		t.Errorf("/data mount %+v: symlink must be resolved, rro set", m)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 || s.Linux.Devices[0].Type != "c" {
		t.Errorf("devices %+v", s.Linux.Devices)
	}
	last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
	if !last.Allow || last.Access != "rw" || *last.Major != 1 || *last.Minor != 3 {
		t.Errorf("device rule %+v", last)
	}
	if !reflect.DeepEqual(s.Process.Rlimits, in.Rlimits) {
		t.Errorf("rlimits %v", s.Process.Rlimits)
	}
	if *s.Linux.Resources.Memory.Limit != 1<<30 {
		t.Errorf("memory %+v", s.Linux.Resources.Memory)
	}
	if s.Linux.RootfsPropagation != "" {
		t.Errorf("rootfs propagation %q", s.Linux.RootfsPropagation)
	}
}

func TestGeneratePrivileged(t *testing.T) {
	in := basicInput()
	in.Config.Linux.SecurityContext.Privileged = true
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("privileged container in an unprivileged pod: %v", err)
	}
	in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
	in.Config.Linux.SecurityContext.MaskedPaths = []string{"/x"}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("privileged has masks %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if m := mountAt(s.Mounts, "/sys"); m == nil || !slices.Contains(m.Options, "rw") {
		t.Errorf("privileged /sys must be writable: %+v", m)
	}
	if len(s.Process.Capabilities.Bounding) != len(AllCapabilities()) {
		t.Errorf("privileged caps %v", s.Process.Capabilities.Bounding)
	}
	if len(s.Linux.Devices) == 0 || !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" }) {
		t.Errorf("privileged devices lack the host's: %d devices", len(s.Linux.Devices))
	}
	if r := s.Linux.Resources.Devices; len(r) != 1 || !r[0].Allow || r[0].Access != "rwm" {
		t.Errorf("privileged device rules %+v", r)
	}
}

func TestGenerateRequestMasks(t *testing.T) {
	in := basicInput()
	in.Config.Linux.SecurityContext.MaskedPaths = []string{"/proc/a"}
	in.Config.Linux.SecurityContext.ReadonlyPaths = []string{"/proc/b"}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Linux.MaskedPaths, []string{"/proc/a"}) || !reflect.DeepEqual(s.Linux.ReadonlyPaths, []string{"/proc/b"}) {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

func TestGenerateHostIPC(t *testing.T) {
	in := basicInput()
	in.Pod.Shm = "/pod/shm"
	in.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if m := mountAt(s.Mounts, "/dev/shm"); m == nil || m.Source != "/dev/shm" {
		t.Errorf("host IPC /dev/shm %+v", m)
	}
}

func TestGenerateUserMountOverridesDefault(t *testing.T) {
	in := basicInput()
	dir := t.TempDir()
	in.Pod.Hosts = "/pod/hosts"
	in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/etc/hosts", HostPath: dir}, {ContainerPath: "/dev/shm/", HostPath: dir}}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"/etc/hosts", "/dev/shm"} {
		n := 0
		for _, m := range s.Mounts {
			if m.Destination == dst {
				n++
				if m.Source != dir {
					t.Errorf("%s from %s, want the request's", dst, m.Source)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d mounts at %s", n, dst)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	dir := t.TempDir()
	for name, mod := range map[string]func(*Input){
		"missing host path": func(in *Input) {
			in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: filepath.Join(dir, "nope")}}
		},
		"relative container path": func(in *Input) { in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "x", HostPath: dir}} },
		// Both exist relative to the test's working dir, as they would
		// relative to berthd's.
		"relative host path": func(in *Input) { in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "."}} },
		"relative device host path": func(in *Input) {
			wd, _ := os.Getwd()
			rel, _ := filepath.Rel(wd, "/dev/null")
			in.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/x", HostPath: rel}}
		},
		"duplicate destination": func(in *Input) {
			in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: dir}, {ContainerPath: "/x/", HostPath: dir}}
		},
		"rro not readonly": func(in *Input) {
			in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: dir, RecursiveReadOnly: true}}
		},
		"device not a device": func(in *Input) { in.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/x", HostPath: dir}} },
		"device bad perms": func(in *Input) {
			in.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/x", HostPath: "/dev/null", Permissions: "rwx"}}
		},
		"relative working dir": func(in *Input) { in.Config.WorkingDir = "rel" },
		"no command":           func(in *Input) { in.Image.Cmd = nil },
		"unknown user":         func(in *Input) { in.Image.User = "ghost" },
		"no rootfs":            func(in *Input) { in.RootPath = "" },
	} {
		t.Run(name, func(t *testing.T) {
			in := basicInput()
			mod(&in)
			if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err %v, want invalid argument", err)
			}
		})
	}
	in := basicInput()
	in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: dir, UidMappings: []*runtimeapi.IDMapping{{}}}}
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("id-mapped mount without a pod user namespace: %v", err)
	}
}

func TestMountPropagation(t *testing.T) {
	dir := t.TempDir()
	defer func(f func(string) (*mountinfo.Info, error)) { mountInfo = f }(mountInfo)
	for _, tc := range []struct {
		name     string
		optional string
		prop     runtimeapi.MountPropagation
		want     string
		rootProp string
		err      bool
	}{
		{name: "private", prop: runtimeapi.MountPropagation_PROPAGATION_PRIVATE, want: "rprivate"},
		{name: "host to container on shared", optional: "shared:1", prop: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, want: "rslave", rootProp: "rslave"},
		{name: "host to container on slave", optional: "master:3", prop: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, want: "rslave", rootProp: "rslave"},
		{name: "host to container on private", prop: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, err: true},
		{name: "bidirectional on shared", optional: "shared:1 master:2", prop: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, want: "rshared", rootProp: "rshared"},
		{name: "bidirectional on slave", optional: "master:2", prop: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mountInfo = func(string) (*mountinfo.Info, error) {
				return &mountinfo.Info{Mountpoint: "/", Optional: tc.optional}, nil
			}
			in := basicInput()
			in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: dir, Propagation: tc.prop}}
			s, err := Generate(in)
			if tc.err {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "mount") {
					t.Fatalf("err %v, want invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := mountAt(s.Mounts, "/x")
			if m == nil || m.Options[1] != tc.want || s.Linux.RootfsPropagation != tc.rootProp {
				t.Fatalf("mount %+v rootfs propagation %q, want %s %q", m, s.Linux.RootfsPropagation, tc.want, tc.rootProp)
			}
		})
	}
}
