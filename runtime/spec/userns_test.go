package spec

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/userns"
)

func usernsInput(t *testing.T) (Input, *runtimeapi.UserNamespace) {
	in := basicInput()
	in.Namespaces.User = "/ns/user"
	in.Namespaces.UserMapping = &userns.Mapping{
		UIDs: []userns.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []userns.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
	opts := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
	in.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = opts
	in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: t.TempDir(), UidMappings: m, GidMappings: m}}
	return in, opts
}

func TestGenerateUserNamespace(t *testing.T) {
	in, _ := usernsInput(t)
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Namespaces[0] != (specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/ns/user"}) {
		t.Errorf("first namespace %v, want the pod's user namespace", s.Linux.Namespaces[0])
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if !slices.Equal(s.Linux.UIDMappings, want) || !slices.Equal(s.Linux.GIDMappings, want) {
		t.Errorf("maps %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	var vol *specs.Mount
	for i := range s.Mounts {
		if s.Mounts[i].Destination == "/vol" {
			vol = &s.Mounts[i]
		}
	}
	if vol == nil || !slices.Equal(vol.UIDMappings, want) || !slices.Contains(vol.Options, "idmap") {
		t.Errorf("volume mount %+v, want id-mapped with the pod's maps", vol)
	}
}

func TestGenerateUserNamespaceRefusals(t *testing.T) {
	other := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 300000, Length: 65536}}
	for name, mod := range map[string]func(*Input, *runtimeapi.UserNamespace){
		"container leaves the pod's namespace": func(in *Input, _ *runtimeapi.UserNamespace) {
			in.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = nil
		},
		"container asks other maps": func(_ *Input, o *runtimeapi.UserNamespace) { o.Uids = other },
		"mode CONTAINER":            func(_ *Input, o *runtimeapi.UserNamespace) { o.Mode = runtimeapi.NamespaceMode_CONTAINER },
		"mount with other maps": func(in *Input, _ *runtimeapi.UserNamespace) {
			in.Config.Mounts[0].UidMappings = other
		},
		"privileged": func(in *Input, _ *runtimeapi.UserNamespace) {
			in.Config.Linux.SecurityContext.Privileged = true
			in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
		},
		"pod without one": func(in *Input, _ *runtimeapi.UserNamespace) {
			in.Namespaces.User, in.Namespaces.UserMapping = "", nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			in, o := usernsInput(t)
			mod(&in, o)
			if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("err %v, want invalid argument", err)
			}
		})
	}
}
