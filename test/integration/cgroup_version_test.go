package integration

import (
	"encoding/json"
	"os"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/test/framework"
)

// cgroup2SuperMagic is statfs(2)'s f_type of a cgroup2 file system.
const cgroup2SuperMagic = 0x63677270

func TestCrictlInfoShowsCgroupVersion(t *testing.T) {
	want := "v1"
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == cgroup2SuperMagic {
		want = "v2"
	}
	// Inside the test VM (hack/vm) the node must be cgroup v2, whatever
	// statfs says: a guest that silently fell back to v1 fails here.
	if os.Getenv("BERTH_VM_VARIANT") != "" && want != "v2" {
		t.Fatalf("test VM %s: /sys/fs/cgroup is not cgroup2 (f_type %#x)", os.Getenv("BERTH_VM_VARIANT"), st.Type)
	}

	d := framework.StartDaemon(t, "")
	out, err := d.Crictl(t, "info")
	if err != nil {
		t.Fatalf("crictl info: %v\n%s", err, out)
	}
	var info struct {
		CgroupVersion string `json:"cgroupVersion"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl info is not JSON: %v\n%s", err, out)
	}
	if info.CgroupVersion != want {
		t.Errorf("crictl info cgroupVersion = %q, want %q\n%s", info.CgroupVersion, want, out)
	}
}
