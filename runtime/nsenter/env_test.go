package nsenter

import (
	"reflect"
	"testing"
)

func TestEnv(t *testing.T) {
	c := Config{Join: map[string]string{Net: "/run/ns/net", IPC: "/run/ns/ipc"}, New: []string{Mount, PID}, SyncFD: 3}
	env, err := c.Env()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"_BERTH_NSENTER=1",
		"_BERTH_SYNC_FD=3",
		"_BERTH_NS_JOIN=ipc=/run/ns/ipc\nnet=/run/ns/net",
		"_BERTH_NS_NEW=mnt,pid",
	}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("got %q, want %q", env, want)
	}
	if !c.Forks() {
		t.Error("a new PID namespace must fork")
	}
	if (Config{Join: map[string]string{PID: "/proc/1/ns/pid"}}).Forks() != true {
		t.Error("joining a PID namespace must fork")
	}
	if (Config{New: []string{Mount, Net}}).Forks() {
		t.Error("no PID namespace, no fork")
	}
}

func TestEnvErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"unknown join":       {Join: map[string]string{"time": "/x"}},
		"unknown new":        {New: []string{"nope"}},
		"empty path":         {Join: map[string]string{Net: ""}},
		"newline in path":    {Join: map[string]string{Net: "/a\nb"}},
		"joined and created": {Join: map[string]string{Net: "/x"}, New: []string{Net}},
	} {
		if _, err := c.Env(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEnvCgroupTasks(t *testing.T) {
	c := Config{New: []string{Mount}, SyncFD: 3, CgroupTasks: []string{"/sys/fs/cgroup/pids/a/tasks", "/sys/fs/cgroup/cpu/a/tasks"}}
	env, err := c.Env()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := env[len(env)-1], "_BERTH_CGROUP_TASKS=/sys/fs/cgroup/pids/a/tasks\n/sys/fs/cgroup/cpu/a/tasks"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"relative/tasks", "/a\nb/tasks", "/a\x00/tasks"} {
		if _, err := (Config{CgroupTasks: []string{bad}}).Env(); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
