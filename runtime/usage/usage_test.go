package usage

import (
	"os"
	"strings"
	"testing"
)

// The test's own cgroup: whatever this process is in has usage.
func ownCgroup(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (f[1] == "pids" || f[0] == "0") && f[2] != "/" {
			return f[2]
		}
	}
	t.Skip("the test runs in the root cgroup")
	return ""
}

func TestOwnCgroup(t *testing.T) {
	u, err := Cgroup(ownCgroup(t))
	if err != nil {
		t.Fatal(err)
	}
	if u.Processes == 0 || u.Threads < u.Processes || u.FileDescriptors == 0 {
		t.Fatalf("no processes counted: %+v", u)
	}
	if _, err := Cgroup("/berth-no-such-cgroup"); err == nil {
		t.Fatal("a missing cgroup has usage")
	}
}

func TestFilesystem(t *testing.T) {
	fs, err := Filesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fs.CapacityBytes == 0 {
		t.Fatalf("%+v", fs)
	}
}
