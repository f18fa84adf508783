package containerinit

import (
	"encoding/json"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseSpecKeepsWhatTheInitUses(t *testing.T) {
	oom := 5
	full := &specs.Spec{
		Version:    specs.Version,
		Process:    &specs.Process{Args: []string{"sh"}, Env: []string{"A=1"}, Cwd: "/w", OOMScoreAdj: &oom, User: specs.User{UID: 1, GID: 2, AdditionalGids: []uint32{3}}},
		Root:       &specs.Root{Path: "rootfs", Readonly: true},
		Hostname:   "h",
		Domainname: "d",
		Mounts:     []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid"}}},
		Linux: &specs.Linux{
			Namespaces:        []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/ns/net"}},
			Devices:           []specs.LinuxDevice{{Path: "/dev/x", Type: "c", Major: 1, Minor: 3}},
			Sysctl:            map[string]string{"kernel.shm_rmid_forced": "1"},
			CgroupsPath:       "/a/b",
			RootfsPropagation: "rslave",
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
			Seccomp:           &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}},
			Resources:         &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(5))}},
		},
		Annotations: map[string]string{"x": "y"},
		Hooks: &specs.Hooks{
			CreateRuntime:   []specs.Hook{{Path: "/node"}},
			CreateContainer: []specs.Hook{{Path: "/c", Args: []string{"c", "1"}}},
			StartContainer:  []specs.Hook{{Path: "/s", Env: []string{"E=1"}}},
		},
	}
	data, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseSpec(data)
	if err != nil {
		t.Fatal(err)
	}
	want := *full
	want.Version = ""
	// The init waits for the creator's createRuntime hooks before its
	// createContainer hooks; poststart and poststop are not its business.
	want.Hooks = &specs.Hooks{CreateRuntime: full.Hooks.CreateRuntime, CreateContainer: full.Hooks.CreateContainer, StartContainer: full.Hooks.StartContainer}
	wl := *full.Linux
	wl.Resources = nil
	want.Linux = &wl
	if !reflect.DeepEqual(got, &want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(&want)
		t.Fatalf("parsed\n%s\nwant\n%s", gj, wj)
	}
}

func ptr[T any](v T) *T { return &v }
