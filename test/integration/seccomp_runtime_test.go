package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/spec"
)

// Seccomp filters loaded by the container init, observed from inside the
// container: the Seccomp line of /proc/self/status and the errors of the
// syscalls a profile blocks. The profiles come from runtime/spec, as
// berthd makes them.

// critest's profile that blocks chmod.
const blockChmodProfile = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}]}`

// seccompOf generates the seccomp part of a spec from a CRI security context.
func seccompOf(t *testing.T, sc *runtimeapi.LinuxContainerSecurityContext) *specs.LinuxSeccomp {
	t.Helper()
	caps, err := spec.Capabilities(sc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := spec.Seccomp(sc, caps, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const seccompProbe = `grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status
busybox chmod 1777 /tmp 2>&1 && echo chmod=ok
busybox unshare -u true 2>&1 && echo unshare=ok
id -u`

// withSysAdmin gives the container CAP_SYS_ADMIN, so that unshare fails
// only where a seccomp filter refuses it.
func withSysAdmin(t *testing.T, s *specs.Spec) {
	t.Helper()
	c, err := spec.Capabilities(&runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Process.Capabilities = c
}

func TestSeccompRuntimeDefault(t *testing.T) {
	e := newRuntimeEnv(t)
	// The profile of a container without CAP_SYS_ADMIN, on a process that
	// has it: only the filter can refuse unshare.
	s := e.baseSpec("rtdefault", "sh", "-c", seccompProbe)
	s.Linux.Seccomp = seccompOf(t, &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}})
	withSysAdmin(t, s)
	r := e.run(t, "rtdefault", s)
	for _, want := range []string{"Seccomp:\t2\n", "NoNewPrivs:\t0\n", "chmod=ok\n", "Operation not permitted\n", "\n0\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	if strings.Contains(r.stdout, "unshare=ok") {
		t.Errorf("unshare allowed:\n%s", r.stdout)
	}

	// The profile made for CAP_SYS_ADMIN allows unshare.
	s = e.baseSpec("rtdefault-admin", "sh", "-c", seccompProbe)
	withSysAdmin(t, s)
	s.Linux.Seccomp = seccompOf(t, &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}, Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}})
	r = e.run(t, "rtdefault-admin", s)
	for _, want := range []string{"Seccomp:\t2\n", "unshare=ok\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("with CAP_SYS_ADMIN: output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
}

func TestSeccompUnconfined(t *testing.T) {
	e := newRuntimeEnv(t)
	s := e.baseSpec("unconfined", "sh", "-c", seccompProbe)
	withSysAdmin(t, s)
	s.Linux.Seccomp = seccompOf(t, &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}})
	if s.Linux.Seccomp != nil {
		t.Fatalf("unconfined gave a profile")
	}
	r := e.run(t, "unconfined", s)
	for _, want := range []string{"Seccomp:\t0\n", "chmod=ok\n", "unshare=ok\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
}

// A Localhost profile, for a non-root user with and without no_new_privs:
// the two points where the init loads the filter.
func TestSeccompLocalhost(t *testing.T) {
	e := newRuntimeEnv(t)
	profile := filepath.Join(t.TempDir(), "block-chmod.json")
	writeFile(t, profile, blockChmodProfile)
	for _, tc := range []struct {
		name string
		uid  uint32
		nnp  bool
	}{
		{"root", 0, false},
		{"user", 1000, false},
		{"user-nnp", 1000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.baseSpec("local-"+tc.name, "sh", "-c", `grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status
busybox mkdir /scratch/d && busybox chmod 700 /scratch/d 2>&1 || echo chmod=denied
id -u`)
			s.Process.User = specs.User{UID: tc.uid, GID: tc.uid}
			// A directory the user owns: only the filter can refuse chmod.
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=1777"}})
			s.Process.NoNewPrivileges = tc.nnp
			s.Linux.Seccomp = seccompOf(t, &runtimeapi.LinuxContainerSecurityContext{
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile},
			})
			r := e.run(t, "local-"+tc.name, s)
			nnp := "NoNewPrivs:\t0\n"
			if tc.nnp {
				nnp = "NoNewPrivs:\t1\n"
			}
			for _, want := range []string{"Seccomp:\t2\n", nnp, "Operation not permitted\n", "chmod=denied\n"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("output lacks %q:\n%s%s", want, r.stdout, r.stderr)
				}
			}
			if r.status.Code != 0 {
				t.Errorf("status %+v", r.status)
			}
		})
	}
}

// A process executed in a confined container is confined the same way.
func TestSeccompExec(t *testing.T) {
	e := newRuntimeEnv(t)
	s := e.baseSpec("execd", "sleep", "1000")
	withSysAdmin(t, s)
	s.Linux.Seccomp = seccompOf(t, &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}})
	c, _ := e.create(t, e.bundle(t, "execd"), s)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := *s.Process
	p.Args = []string{"sh", "-c", "grep Seccomp: /proc/self/status; busybox unshare -u true 2>&1 || echo unshare=denied"}
	out, _, err := e.exec(t, c, s, &p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Seccomp:\t2\n") || !strings.Contains(out, "unshare=denied\n") {
		t.Errorf("exec output:\n%s", out)
	}
}

// A profile the kernel cannot take fails the create with the init's error.
func TestSeccompBadProfileFailsCreate(t *testing.T) {
	e := newRuntimeEnv(t)
	b := e.bundle(t, "bad")
	s := e.baseSpec("bad", "true")
	s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActNotify}
	writeSpec(t, b, s)
	cgroup(t, s)
	c, err := process.Create(process.CreateOpts{InitPath: e.initPath, BundleDir: b, Spec: s})
	if err == nil {
		_ = c.Destroy()
		t.Fatal("created a container with an unloadable profile")
	}
	if !strings.Contains(err.Error(), "seccomp") {
		t.Errorf("error does not name seccomp: %v", err)
	}
}

// The compiled filter reaches the init as an inherited file, which the
// container's command must not inherit in turn; after the first container,
// the filter is not compiled again.
func TestSeccompProgramHandedDown(t *testing.T) {
	e := newRuntimeEnv(t)
	var first, later time.Duration
	for i := range 4 {
		name := fmt.Sprintf("handed-%d", i)
		s := e.baseSpec(name, "ls", "-l", "/proc/self/fd/")
		s.Linux.Seccomp = seccompOf(t, &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}})
		b := e.bundle(t, name)
		start := time.Now()
		c, output := e.create(t, b, s)
		took := time.Since(start)
		if i == 0 {
			first = took
		} else if later == 0 || took < later {
			later = took
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(); err != nil {
			t.Fatal(err)
		}
		out, errOut := output()
		if strings.Contains(out, "seccomp") || !strings.Contains(out, "0 -> ") {
			t.Fatalf("the command's fds:\n%s%s", out, errOut)
		}
	}
	t.Logf("create with runtime/default: first %v (compiles), then %v", first, later)
}
