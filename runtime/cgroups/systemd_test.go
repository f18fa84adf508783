package cgroups

import (
	"bytes"
	"context"
	"math"
	"os"
	"path"
	"strings"
	"testing"

	systemd "github.com/coreos/go-systemd/v22/dbus"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestExpandSlice(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"-.slice", "/"},
		{"system.slice", "/system.slice"},
		{"kubepods.slice", "/kubepods.slice"},
		{"kubepods-burstable.slice", "/kubepods.slice/kubepods-burstable.slice"},
		{"kubepods-besteffort-pod1b2c_3d.slice", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c_3d.slice"},
		{"kubepods-pod9.slice", "/kubepods.slice/kubepods-pod9.slice"},
	} {
		got, err := ExpandSlice(c.in)
		if err != nil || got != c.want {
			t.Errorf("ExpandSlice(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "kubepods", "/kubepods.slice", "a/b.slice", ".slice", "-a.slice", "a-.slice", "a--b.slice", "kubepods.scope"} {
		if got, err := ExpandSlice(bad); err == nil {
			t.Errorf("ExpandSlice(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSystemdPodCgroup(t *testing.T) {
	for _, c := range []struct{ parent, want string }{
		{"", "/berth.slice/berth-abc.scope"},
		{"kubepods-besteffort-pod12.slice", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/berth-abc.scope"},
		{"kubepods-burstable.slice", "/kubepods.slice/kubepods-burstable.slice/berth-abc.scope"},
		{"-.slice", "/berth-abc.scope"},
		{"/test.slice", "/test.slice/berth-abc.scope"},
		{"/kubepods.slice/kubepods-burstable.slice", "/kubepods.slice/kubepods-burstable.slice/berth-abc.scope"},
	} {
		got, err := systemdPodCgroup(c.parent, "abc")
		if err != nil || got != c.want {
			t.Errorf("pod cgroup in %q = %q, %v; want %q", c.parent, got, err, c.want)
		}
		unit, slice, err := unitOf(got)
		want := path.Base(c.parent)
		if c.parent == "" {
			want = DefaultSlice
		}
		if err != nil || unit != "berth-abc.scope" || slice != want {
			t.Errorf("unitOf(%q) = %q, %q, %v; want berth-abc.scope in %q", got, unit, slice, err, want)
		}
	}
	// A cgroupfs path is no slice: the kubelet and berthd disagree on the
	// driver, which must not silently make cgroups elsewhere.
	if _, err := systemdPodCgroup("/kubepods/burstable/pod1", "abc"); err == nil {
		t.Error("a cgroupfs parent was accepted by the systemd driver")
	}
	if _, _, err := unitOf("/berth/berth-abc"); err == nil {
		t.Error("unitOf accepted a cgroupfs path")
	}
}

func props(ps []systemd.Property) map[string]any {
	m := map[string]any{}
	for _, p := range ps {
		m[p.Name] = p.Value.Value()
	}
	return m
}

func TestUnitProperties(t *testing.T) {
	shares, quota, period := uint64(512), int64(50000), uint64(100000)
	mem, pids := int64(64<<20), int64(100)
	res := &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Cpus: "0-1,3", Mems: "0"},
		Memory: &specs.LinuxMemory{Limit: &mem},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
	v2 := props(UnitProperties(res, true))
	for name, want := range map[string]any{
		"CPUAccounting":      true,
		"MemoryAccounting":   true,
		"TasksAccounting":    true,
		"CPUWeight":          uint64(20), // 1 + (510*9999)/262142
		"CPUQuotaPerSecUSec": uint64(500000),
		"CPUQuotaPeriodUSec": uint64(100000),
		"MemoryMax":          uint64(64 << 20),
		"TasksMax":           uint64(100),
	} {
		if v2[name] != want {
			t.Errorf("v2 %s = %v (%T), want %v (%T)", name, v2[name], v2[name], want, want)
		}
	}
	if b, _ := v2["AllowedCPUs"].([]byte); !bytes.Equal(b, []byte{0b1011}) {
		t.Errorf("AllowedCPUs = %v, want [0b1011]", v2["AllowedCPUs"])
	}
	if b, _ := v2["AllowedMemoryNodes"].([]byte); !bytes.Equal(b, []byte{1}) {
		t.Errorf("AllowedMemoryNodes = %v, want [1]", v2["AllowedMemoryNodes"])
	}
	for _, absent := range []string{"CPUShares", "MemoryLimit"} {
		if _, ok := v2[absent]; ok {
			t.Errorf("v2 has the v1 property %s", absent)
		}
	}

	v1 := props(UnitProperties(res, false))
	if v1["CPUShares"] != uint64(512) || v1["MemoryLimit"] != uint64(64<<20) {
		t.Errorf("v1 CPUShares %v MemoryLimit %v, want 512 and 64MiB", v1["CPUShares"], v1["MemoryLimit"])
	}
	for _, absent := range []string{"CPUWeight", "MemoryMax", "AllowedCPUs"} {
		if _, ok := v1[absent]; ok {
			t.Errorf("v1 has the v2-only property %s", absent)
		}
	}

	// No limits: accounting only, nothing that would cap the pod.
	none := props(UnitProperties(&specs.LinuxResources{}, true))
	if len(none) != 4 {
		t.Errorf("properties without limits: %v", none)
	}
	if n := props(UnitProperties(nil, true)); len(n) != 4 {
		t.Errorf("properties of nil resources: %v", n)
	}
}

func TestQuotaPerSecUSec(t *testing.T) {
	for _, c := range []struct {
		quota  int64
		period uint64
		want   uint64
	}{
		{50000, 100000, 500000},
		{100000, 100000, 1000000},
		{20000, 100000, 200000},
		{12345, 100000, 130000}, // rounded up to 10ms
		{1000, 3000, 340000},    // 333333 up to 340000
		{0, 100000, math.MaxUint64},
		{-1, 100000, math.MaxUint64},
	} {
		if got := QuotaPerSecUSec(c.quota, c.period); got != c.want {
			t.Errorf("QuotaPerSecUSec(%d, %d) = %d, want %d", c.quota, c.period, got, c.want)
		}
	}
}

func TestCPUWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 1, 2: 1, 512: 20, 1024: 39, 2048: 79, 262144: 10000, 1 << 30: 10000} {
		if got := CPUWeight(shares); got != want {
			t.Errorf("CPUWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestCPUSetBits(t *testing.T) {
	for in, want := range map[string][]byte{
		"0":       {1},
		"0-7":     {0xff},
		"8":       {0, 1},
		"1,9-10":  {0b10, 0b110},
		" 0 , 2 ": {0b101},
	} {
		got, err := CPUSetBits(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("CPUSetBits(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "1-x", ","} {
		if got, err := CPUSetBits(bad); err == nil {
			t.Errorf("CPUSetBits(%q) = %v, want an error", bad, got)
		}
	}
}

func TestNewSystemdWithoutSystemd(t *testing.T) {
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		t.Skip("systemd runs here")
	}
	s, err := NewSystemd(context.Background())
	if err == nil {
		s.Close()
		t.Fatal("NewSystemd succeeded without systemd")
	}
	if !strings.Contains(err.Error(), "systemd is not running") {
		t.Errorf("error does not say why: %v", err)
	}
}

// A parent that climbs with ".." (or holds a NUL or newline) is refused by
// both drivers' path makers, not cleaned into another cgroup.
func TestCheckParent(t *testing.T) {
	for _, p := range []string{"", "/kubepods/burstable/pod1", "kubepods", "kubepods-burstable-pod1.slice", "/a..b/c..slice"} {
		if err := CheckParent(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"/kubepods/../../x", "..", "/kubepods/..", "a/./b", "/x\n/y", "/x\x00"} {
		if err := CheckParent(p); err == nil {
			t.Errorf("%q accepted", p)
		}
		if got, err := systemdPodCgroup(p+"/k.slice", "abc"); err == nil {
			t.Errorf("systemd driver: %q gave %q", p+"/k.slice", got)
		}
	}
}
