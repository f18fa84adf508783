package process

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/nsenter"
)

func TestNsConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ns    []specs.LinuxNamespace
		join  map[string]string
		new   []string
		forks bool
		err   bool
	}{
		{name: "pod container", ns: []specs.LinuxNamespace{
			{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/ns/net"}, {Type: specs.UTSNamespace, Path: "/ns/uts"},
			{Type: specs.IPCNamespace, Path: "/ns/ipc"}, {Type: specs.PIDNamespace},
		}, join: map[string]string{nsenter.Net: "/ns/net", nsenter.UTS: "/ns/uts", nsenter.IPC: "/ns/ipc"}, new: []string{nsenter.Mount, nsenter.PID}, forks: true},
		{name: "host pid", ns: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}},
			join: map[string]string{}, new: []string{nsenter.Mount, nsenter.Cgroup}},
		{name: "shared pid", ns: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace, Path: "/proc/9/ns/pid"}},
			join: map[string]string{nsenter.PID: "/proc/9/ns/pid"}, new: []string{nsenter.Mount}, forks: true},
		{name: "no mount namespace", ns: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}, err: true},
		{name: "joined mount namespace", ns: []specs.LinuxNamespace{{Type: specs.MountNamespace, Path: "/x"}}, err: true},
		{name: "user namespace", ns: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.UserNamespace}}, err: true},
		{name: "unknown", ns: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: "time"}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := nsConfig(&specs.Spec{Linux: &specs.Linux{Namespaces: tc.ns}})
			if tc.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Join, tc.join) || !reflect.DeepEqual(c.New, tc.new) || c.Forks() != tc.forks {
				t.Fatalf("got join %v new %v forks %v, want %v %v %v", c.Join, c.New, c.Forks(), tc.join, tc.new, tc.forks)
			}
		})
	}
}
