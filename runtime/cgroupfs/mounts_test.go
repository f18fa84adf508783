package cgroupfs

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseCgroupMounts(t *testing.T) {
	long := strings.Repeat("x", 5000)
	in := "22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n" +
		"30 22 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n" +
		"31 22 0:27 / /sys/fs/cgroup/name\\040x rw master:3 - cgroup cgroup rw,xattr,name=systemd\n" +
		"40 1 0:50 / /var/lib/" + long + " rw - overlay overlay rw,lowerdir=/a\n" +
		"29 22 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate" // no newline at the end
	got, err := parseCgroupMounts(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []cgroupMount{
		{"/sys/fs/cgroup/memory", "cgroup", "rw,memory"},
		{"/sys/fs/cgroup/name x", "cgroup", "rw,xattr,name=systemd"},
		{"/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"1 2 3\n", "1 2 0:1 / /x rw - cgroup\n", "1 2 0:1 / - cgroup cgroup rw\n"} {
		if _, err := parseCgroupMounts(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// On this node the lean reader finds what moby/sys/mountinfo found.
func TestCgroupMountsOfNode(t *testing.T) {
	ms, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no cgroup mount found")
	}
	for _, m := range ms {
		if !strings.HasPrefix(m.mountpoint, "/") || (m.fsType != "cgroup" && m.fsType != "cgroup2") {
			t.Errorf("odd mount %+v", m)
		}
	}
}
