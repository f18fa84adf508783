package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

// The security context fields of a container request (issue 7), each seen
// in the generated spec.

func privilegedPod(in *Input) {
	in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
}

func sorted(v []string) []string {
	v = slices.Clone(v)
	slices.Sort(v)
	return v
}

func capsAre(t *testing.T, s *specs.Spec, want []string) {
	t.Helper()
	c := s.Process.Capabilities
	for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

// allows reports whether a rule of p allows name unconditionally.
func allows(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

func isRuntimeDefault(t *testing.T, p *specs.LinuxSeccomp) {
	t.Helper()
	if p == nil || p.DefaultAction != specs.ActErrno || !allows(p, "read") {
		t.Fatalf("seccomp %+v, want runtime/default", p)
	}
}

// Older kubelets still send the deprecated string fields.
func setSeccompPath(sc *runtimeapi.LinuxContainerSecurityContext, p string) {
	//lint:ignore SA1019 the deprecated field is part of what is tested
	sc.SeccompProfilePath = p
}

func setAppArmorPath(sc *runtimeapi.LinuxContainerSecurityContext, p string) {
	//lint:ignore SA1019 the deprecated field is part of what is tested
	sc.ApparmorProfile = p
}

type securityCase struct {
	name  string
	mod   func(in *Input, sc *runtimeapi.LinuxContainerSecurityContext)
	err   error
	check func(t *testing.T, s *specs.Spec)
}

func runSecurityCases(t *testing.T, cases []securityCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := basicInput()
			in.Pod.Hosts = "/pod/hosts"
			tc.mod(&in, in.Config.Linux.SecurityContext)
			s, err := Generate(in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func TestSecurityCapabilities(t *testing.T) {
	all := AllCapabilities()
	caps := func(add, drop []string) func(*Input, *runtimeapi.LinuxContainerSecurityContext) {
		return func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.Capabilities = &runtimeapi.Capability{AddCapabilities: add, DropCapabilities: drop}
		}
	}
	want := func(w []string) func(*testing.T, *specs.Spec) {
		return func(t *testing.T, s *specs.Spec) {
			capsAre(t, s, w)
			if len(s.Process.Capabilities.Ambient) != 0 || len(s.Process.Capabilities.Inheritable) != 0 {
				t.Errorf("ambient %v inheritable %v", s.Process.Capabilities.Ambient, s.Process.Capabilities.Inheritable)
			}
		}
	}
	runSecurityCases(t, []securityCase{
		{name: "containerd's defaults", mod: caps(nil, nil), check: want(DefaultCapabilities)},
		{name: "add one", mod: caps([]string{"NET_ADMIN"}, nil), check: want(append(slices.Clone(DefaultCapabilities), "CAP_NET_ADMIN"))},
		{name: "drop one", mod: caps(nil, []string{"CHOWN"}), check: want(without(DefaultCapabilities, "CAP_CHOWN"))},
		{name: "add ALL", mod: caps([]string{"ALL"}, nil), check: want(all)},
		{name: "drop ALL", mod: caps(nil, []string{"ALL"}), check: want(nil)},
		{name: "add ALL drop one", mod: caps([]string{"ALL"}, []string{"SYS_ADMIN"}), check: want(without(all, "CAP_SYS_ADMIN"))},
		{name: "drop ALL add one", mod: caps([]string{"NET_BIND_SERVICE"}, []string{"ALL"}), check: want([]string{"CAP_NET_BIND_SERVICE"})},
		{name: "drop beats add", mod: caps([]string{"SYS_TIME"}, []string{"SYS_TIME"}), check: want(DefaultCapabilities)},
		{name: "lower case ALL", mod: caps(nil, []string{"all"}), check: want(nil)},
		{name: "unknown to add", mod: caps([]string{"CAP_FLY"}, nil), err: errdefs.ErrInvalidArgument},
		{name: "unknown to drop", mod: caps(nil, []string{"FLY"}), err: errdefs.ErrInvalidArgument},
	})
}

func TestSecurityPrivileged(t *testing.T) {
	runSecurityCases(t, []securityCase{
		{name: "needs a privileged pod", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.Privileged = true },
			err: errdefs.ErrInvalidArgument},
		{name: "privileged", mod: func(in *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			privilegedPod(in)
			sc.Privileged = true
			sc.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}
			sc.MaskedPaths = []string{"/proc/kcore"}
			sc.ReadonlyPaths = []string{"/proc/sys"}
			// Confinement a privileged container asks for is not applied.
			sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent/profile.json"}
			sc.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "deny-write"}
		}, check: func(t *testing.T, s *specs.Spec) {
			capsAre(t, s, AllCapabilities())
			if len(s.Linux.MaskedPaths)+len(s.Linux.ReadonlyPaths) != 0 {
				t.Errorf("masked %v read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
			for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
				if m := mountAt(s.Mounts, dst); m == nil || !slices.Contains(m.Options, "rw") || slices.Contains(m.Options, "ro") {
					t.Errorf("%s not writable: %+v", dst, m)
				}
			}
			if !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" }) {
				t.Errorf("host devices missing: %d devices", len(s.Linux.Devices))
			}
			if r := s.Linux.Resources.Devices; len(r) != 1 || !r[0].Allow || r[0].Access != "rwm" {
				t.Errorf("device cgroup %+v", r)
			}
			if s.Linux.Seccomp != nil {
				t.Errorf("privileged container confined by seccomp")
			}
		}},
		{name: "unprivileged in a privileged pod", mod: func(in *Input, _ *runtimeapi.LinuxContainerSecurityContext) { privilegedPod(in) },
			check: func(t *testing.T, s *specs.Spec) {
				capsAre(t, s, DefaultCapabilities)
				if m := mountAt(s.Mounts, "/sys"); m == nil || !slices.Contains(m.Options, "ro") {
					t.Errorf("/sys writable: %+v", m)
				}
				if !slices.Equal(s.Linux.MaskedPaths, DefaultMaskedPaths) {
					t.Errorf("masked %v", s.Linux.MaskedPaths)
				}
			}},
	})
}

func TestSecurityProcess(t *testing.T) {
	user := func(uid, gid uint32, gids ...uint32) func(*testing.T, *specs.Spec) {
		return func(t *testing.T, s *specs.Spec) {
			u := s.Process.User
			if u.UID != uid || u.GID != gid || !slices.Equal(u.AdditionalGids, gids) {
				t.Errorf("user %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, uid, gid, gids)
			}
		}
	}
	runSecurityCases(t, []securityCase{
		{name: "no_new_privs", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.NoNewPrivs = true },
			check: func(t *testing.T, s *specs.Spec) {
				if !s.Process.NoNewPrivileges {
					t.Error("no_new_privs not set")
				}
			}},
		{name: "privilege escalation allowed", mod: func(*Input, *runtimeapi.LinuxContainerSecurityContext) {},
			check: func(t *testing.T, s *specs.Spec) {
				if s.Process.NoNewPrivileges {
					t.Error("no_new_privs set")
				}
			}},
		{name: "run_as_user", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUser = i64v(1000) },
			check: user(1000, 1001, 1001, 2000)},
		{name: "run_as_user without passwd entry", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUser = i64v(4242) },
			check: user(4242, 0, 0)},
		{name: "run_as_username", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUsername = "web" },
			check: user(33, 33, 33, 2000, 44)},
		{name: "run_as_username unknown", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUsername = "ghost" },
			err: errdefs.ErrInvalidArgument},
		{name: "run_as_group", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUser, sc.RunAsGroup = i64v(1000), i64v(44)
		}, check: user(1000, 44, 44, 2000)},
		{name: "run_as_group with username", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUsername, sc.RunAsGroup = "app", i64v(7)
		}, check: user(1000, 7, 7, 2000)},
		{name: "run_as_group without a user", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsGroup = i64v(44) },
			err: errdefs.ErrInvalidArgument},
		{name: "run_as_group without a user, image has one", mod: func(in *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			in.Image.User = "app"
			sc.RunAsGroup = i64v(44)
		}, err: errdefs.ErrInvalidArgument},
		{name: "supplemental groups merged with the image's", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUser, sc.SupplementalGroups = i64v(1000), []int64{1234, 5678}
		}, check: user(1000, 1001, 1001, 2000, 1234, 5678)},
		{name: "supplemental groups strict", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUser, sc.SupplementalGroups = i64v(1000), []int64{1234}
			sc.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
		}, check: user(1000, 1001, 1001, 1234)},
		{name: "supplemental group out of range", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.SupplementalGroups = []int64{1 << 40}
		}, err: errdefs.ErrInvalidArgument},
	})
}

func TestSecurityFilesystem(t *testing.T) {
	runSecurityCases(t, []securityCase{
		{name: "readonly rootfs", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { sc.ReadonlyRootfs = true },
			check: func(t *testing.T, s *specs.Spec) {
				if !s.Root.Readonly {
					t.Error("root not read-only")
				}
				if m := mountAt(s.Mounts, "/etc/hosts"); m == nil || !slices.Contains(m.Options, "ro") {
					t.Errorf("/etc/hosts %+v", m)
				}
			}},
		{name: "writable rootfs", mod: func(*Input, *runtimeapi.LinuxContainerSecurityContext) {},
			check: func(t *testing.T, s *specs.Spec) {
				if s.Root.Readonly {
					t.Error("root read-only")
				}
			}},
		{name: "default masked and read-only paths", mod: func(*Input, *runtimeapi.LinuxContainerSecurityContext) {},
			check: func(t *testing.T, s *specs.Spec) {
				if !slices.Equal(s.Linux.MaskedPaths, DefaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, DefaultReadonlyPaths) {
					t.Errorf("masked %v read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
			}},
		{name: "the request's masked and read-only paths", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.MaskedPaths, sc.ReadonlyPaths = []string{"/bin/ls"}, []string{"/tmp"}
		}, check: func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Linux.MaskedPaths, []string{"/bin/ls"}) || !slices.Equal(s.Linux.ReadonlyPaths, []string{"/tmp"}) {
				t.Errorf("masked %v read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
		}},
		{name: "pod sysctls", mod: func(in *Input, _ *runtimeapi.LinuxContainerSecurityContext) {
			in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}}
		}, check: func(t *testing.T, s *specs.Spec) {
			if s.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" {
				t.Errorf("sysctl %v", s.Linux.Sysctl)
			}
		}},
	})
}

func TestSecuritySeccomp(t *testing.T) {
	dir := t.TempDir()
	blockChmod := filepath.Join(dir, "block-chmod.json")
	malformed := filepath.Join(dir, "malformed.json")
	notify := filepath.Join(dir, "notify.json")
	for p, data := range map[string]string{
		blockChmod: `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}`,
		malformed:  `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [`,
		notify:     `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}`,
	} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	profile := func(typ runtimeapi.SecurityProfile_ProfileType, ref string) func(*Input, *runtimeapi.LinuxContainerSecurityContext) {
		return func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
		}
	}
	path := func(p string) func(*Input, *runtimeapi.LinuxContainerSecurityContext) {
		return func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { setSeccompPath(sc, p) }
	}
	none := func(t *testing.T, s *specs.Spec) {
		if s.Linux.Seccomp != nil {
			t.Errorf("seccomp %+v, want none", s.Linux.Seccomp.DefaultAction)
		}
	}
	runtimeDefault := func(t *testing.T, s *specs.Spec) { isRuntimeDefault(t, s.Linux.Seccomp) }
	chmodBlocked := func(t *testing.T, s *specs.Spec) {
		p := s.Linux.Seccomp
		if p == nil || p.DefaultAction != specs.ActAllow || len(p.Syscalls) != 1 || p.Syscalls[0].Action != specs.ActErrno ||
			!slices.Contains(p.Syscalls[0].Names, "chmod") {
			t.Errorf("seccomp %+v, want the block-chmod profile", p)
		}
	}
	runSecurityCases(t, []securityCase{
		{name: "unset is unconfined", mod: func(*Input, *runtimeapi.LinuxContainerSecurityContext) {}, check: none},
		{name: "unset with seccomp_default", mod: func(in *Input, _ *runtimeapi.LinuxContainerSecurityContext) { in.SeccompDefault = true },
			check: runtimeDefault},
		{name: "empty profile is RuntimeDefault", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.Seccomp = &runtimeapi.SecurityProfile{}
		}, check: runtimeDefault},
		{name: "RuntimeDefault", mod: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), check: runtimeDefault},
		{name: "Unconfined despite seccomp_default", mod: func(in *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			in.SeccompDefault = true
			profile(runtimeapi.SecurityProfile_Unconfined, "")(in, sc)
		}, check: none},
		{name: "Localhost", mod: profile(runtimeapi.SecurityProfile_Localhost, blockChmod), check: chmodBlocked},
		{name: "Localhost missing file", mod: profile(runtimeapi.SecurityProfile_Localhost, filepath.Join(dir, "nope.json")), err: errdefs.ErrInvalidArgument},
		{name: "Localhost malformed", mod: profile(runtimeapi.SecurityProfile_Localhost, malformed), err: errdefs.ErrInvalidArgument},
		{name: "Localhost unsupported action", mod: profile(runtimeapi.SecurityProfile_Localhost, notify), err: errdefs.ErrInvalidArgument},
		{name: "Localhost relative path", mod: profile(runtimeapi.SecurityProfile_Localhost, "block-chmod.json"), err: errdefs.ErrInvalidArgument},
		{name: "Localhost without path", mod: profile(runtimeapi.SecurityProfile_Localhost, ""), err: errdefs.ErrInvalidArgument},
		{name: "unknown profile type", mod: profile(runtimeapi.SecurityProfile_ProfileType(9), ""), err: errdefs.ErrInvalidArgument},
		{name: "path runtime/default", mod: path("runtime/default"), check: runtimeDefault},
		{name: "path docker/default", mod: path("docker/default"), check: runtimeDefault},
		{name: "path unconfined", mod: path("unconfined"), check: none},
		{name: "path localhost/", mod: path("localhost/" + blockChmod), check: chmodBlocked},
		{name: "path localhost/ missing", mod: path("localhost/" + filepath.Join(dir, "nope.json")), err: errdefs.ErrInvalidArgument},
		{name: "path unknown", mod: path("strict"), err: errdefs.ErrInvalidArgument},
		{name: "field wins over path", mod: func(in *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			setSeccompPath(sc, "runtime/default")
			profile(runtimeapi.SecurityProfile_Localhost, blockChmod)(in, sc)
		}, check: chmodBlocked},
		{name: "runtime/default follows the capabilities", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.Seccomp = &runtimeapi.SecurityProfile{}
			sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		}, check: func(t *testing.T, s *specs.Spec) {
			isRuntimeDefault(t, s.Linux.Seccomp)
			if !allows(s.Linux.Seccomp, "mount") || !allows(s.Linux.Seccomp, "unshare") {
				t.Error("CAP_SYS_ADMIN does not allow mount and unshare")
			}
		}},
		{name: "runtime/default without CAP_SYS_ADMIN", mod: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""),
			check: func(t *testing.T, s *specs.Spec) {
				if allows(s.Linux.Seccomp, "mount") || allows(s.Linux.Seccomp, "unshare") {
					t.Error("mount or unshare allowed without CAP_SYS_ADMIN")
				}
			}},
		{name: "privileged is unconfined", mod: func(in *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			privilegedPod(in)
			in.SeccompDefault = true
			sc.Privileged = true
			profile(runtimeapi.SecurityProfile_Localhost, blockChmod)(in, sc)
		}, check: none},
	})
}

func TestSecurityLSM(t *testing.T) {
	apparmor := func(typ runtimeapi.SecurityProfile_ProfileType, ref string) func(*Input, *runtimeapi.LinuxContainerSecurityContext) {
		return func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.Apparmor = &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
		}
	}
	ok := func(t *testing.T, s *specs.Spec) {
		if s.Process.ApparmorProfile != "" || s.Process.SelinuxLabel != "" || s.Linux.MountLabel != "" {
			t.Errorf("LSM fields set: %q %q %q", s.Process.ApparmorProfile, s.Process.SelinuxLabel, s.Linux.MountLabel)
		}
	}
	runSecurityCases(t, []securityCase{
		{name: "no AppArmor", mod: func(*Input, *runtimeapi.LinuxContainerSecurityContext) {}, check: ok},
		{name: "AppArmor unconfined", mod: apparmor(runtimeapi.SecurityProfile_Unconfined, ""), check: ok},
		{name: "AppArmor runtime default", mod: apparmor(runtimeapi.SecurityProfile_RuntimeDefault, ""), check: ok},
		{name: "AppArmor localhost", mod: apparmor(runtimeapi.SecurityProfile_Localhost, "cri-validate-apparmor-test-deny-write"), err: errdefs.ErrInvalidArgument},
		{name: "deprecated AppArmor unconfined", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { setAppArmorPath(sc, "unconfined") }, check: ok},
		{name: "deprecated AppArmor runtime/default", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) { setAppArmorPath(sc, "runtime/default") }, check: ok},
		{name: "deprecated AppArmor localhost", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			setAppArmorPath(sc, "localhost/cri-validate-apparmor-test-deny-write")
		}, err: errdefs.ErrInvalidArgument},
		{name: "empty SELinux options", mod: func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.SelinuxOptions = &runtimeapi.SELinuxOption{}
		}, check: ok},
	})
}

// SELinux options are ignored on a node without SELinux (as containerd and
// CRI-O do; Kubernetes applies them only there) and refused on one with it,
// where berth could not apply the label.
func TestSELinuxOptions(t *testing.T) {
	saved := selinuxEnabled
	defer func() { selinuxEnabled = saved }()
	level := func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
		sc.SelinuxOptions = &runtimeapi.SELinuxOption{Level: "s0:c4,c5"}
	}
	typ := func(_ *Input, sc *runtimeapi.LinuxContainerSecurityContext) {
		sc.SelinuxOptions = &runtimeapi.SELinuxOption{Type: "container_t"}
	}
	unlabelled := func(t *testing.T, s *specs.Spec) {
		if s.Process.SelinuxLabel != "" || s.Linux.MountLabel != "" {
			t.Errorf("SELinux label set: %q %q", s.Process.SelinuxLabel, s.Linux.MountLabel)
		}
	}
	selinuxEnabled = func() bool { return false }
	runSecurityCases(t, []securityCase{
		{name: "SELinux level, no SELinux", mod: level, check: unlabelled},
		{name: "SELinux type, no SELinux", mod: typ, check: unlabelled},
	})
	if err := CheckSandboxLSM(&runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: &runtimeapi.SELinuxOption{Level: "s0"}}); err != nil {
		t.Errorf("pod with SELinux level s0 on a node without SELinux: %v", err)
	}
	selinuxEnabled = func() bool { return true }
	runSecurityCases(t, []securityCase{
		{name: "SELinux level, SELinux on", mod: level, err: errdefs.ErrInvalidArgument},
		{name: "SELinux type, SELinux on", mod: typ, err: errdefs.ErrInvalidArgument},
	})
}

func TestCheckSandboxLSM(t *testing.T) {
	saved := selinuxEnabled
	defer func() { selinuxEnabled = saved }()
	selinuxEnabled = func() bool { return true }
	for name, tc := range map[string]struct {
		sc  *runtimeapi.LinuxSandboxSecurityContext
		bad bool
	}{
		"nil":                {sc: nil},
		"unconfined":         {sc: &runtimeapi.LinuxSandboxSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}},
		"apparmor localhost": {sc: &runtimeapi.LinuxSandboxSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "x"}}, bad: true},
		"selinux user":       {sc: &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: &runtimeapi.SELinuxOption{User: "system_u"}}, bad: true},
		"privileged":         {sc: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true, SelinuxOptions: &runtimeapi.SELinuxOption{User: "system_u"}}},
	} {
		err := CheckSandboxLSM(tc.sc)
		if tc.bad != errors.Is(err, errdefs.ErrInvalidArgument) || (!tc.bad && err != nil) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// A node may withhold capabilities from berthd (this one's sandbox lacks
// CAP_SYS_RESOURCE): ALL and privileged mean what berthd holds, a drop of
// a withheld one is a no-op, and asking for one is a clear error.
func TestCapabilitiesWithheld(t *testing.T) {
	saved := heldCapabilities
	defer func() { heldCapabilities = saved }()
	var known []string
	for _, c := range capability.ListKnown() {
		known = append(known, "CAP_"+strings.ToUpper(c.String()))
	}
	held := without(known, "CAP_SYS_RESOURCE")
	heldCapabilities = func() []string { return held }

	for name, tc := range map[string]struct {
		sc   *runtimeapi.LinuxContainerSecurityContext
		want []string
		err  bool
	}{
		"privileged":       {sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, want: held},
		"add ALL":          {sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}}, want: held},
		"drop withheld":    {sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"SYS_RESOURCE"}}}, want: DefaultCapabilities},
		"add withheld":     {sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_RESOURCE"}}}, err: true},
		"ambient withheld": {sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddAmbientCapabilities: []string{"SYS_RESOURCE"}}}, err: true},
		"add unknown":      {sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"TELEPORT"}}}, err: true},
	} {
		c, err := Capabilities(tc.sc)
		if tc.err {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("%s: err = %v, want invalid argument", name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(sorted(c.Bounding), sorted(tc.want)) {
			t.Errorf("%s: bounding %v, want %v", name, c.Bounding, tc.want)
		}
	}
	// Callers may change what they get.
	a := AllCapabilities()
	a[0] = "CAP_CHANGED"
	if AllCapabilities()[0] == "CAP_CHANGED" {
		t.Error("AllCapabilities shares its slice")
	}
}
