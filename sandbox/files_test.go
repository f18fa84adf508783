package sandbox

import (
	"strings"
	"testing"
)

func TestResolvConf(t *testing.T) {
	b, err := resolvConf(&DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"a.svc", "svc"}, Options: []string{"ndots:5"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "search a.svc svc\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
	if string(b) != want {
		t.Errorf("resolv.conf = %q, want %q", b, want)
	}
}

func TestHostsFile(t *testing.T) {
	h := string(hostsFile("web-0", []string{"10.1.0.5", "fd00::5"}))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "10.1.0.5\tweb-0\n", "fd00::5\tweb-0\n"} {
		if !strings.Contains(h, want) {
			t.Errorf("hosts lacks %q:\n%s", want, h)
		}
	}
}

func TestPodCgroupPath(t *testing.T) {
	for parent, want := range map[string]string{
		"":                                "/berth/berth-abc",
		"/kubepods/burstable/pod1":        "/kubepods/burstable/pod1/berth-abc",
		"kubepods":                        "/kubepods/berth-abc",
		"kubepods-burstable-pod1.slice":   "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/berth-abc",
		"/kubepods.slice/x-y.slice/z.sub": "/kubepods.slice/x-y.slice/z.sub/berth-abc",
	} {
		if got := podCgroupPath(parent, "abc"); got != want {
			t.Errorf("parent %q: %q, want %q", parent, got, want)
		}
	}
}

func TestLinuxResources(t *testing.T) {
	r := linuxResources(&Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20},
		&Resources{CPUShares: 10, CPUQuota: 10000, CPUPeriod: 100000, MemoryLimit: 8 << 20})
	if *r.CPU.Shares != 522 || *r.CPU.Quota != 60000 || *r.CPU.Period != 100000 || *r.Memory.Limit != 72<<20 {
		t.Errorf("sum = shares %d quota %d period %d memory %d", *r.CPU.Shares, *r.CPU.Quota, *r.CPU.Period, *r.Memory.Limit)
	}
	// Overhead alone sets no limit: the pod itself is unlimited.
	r = linuxResources(nil, &Resources{MemoryLimit: 8 << 20, CPUQuota: 1000})
	if r.Memory != nil || (r.CPU != nil && r.CPU.Quota != nil) {
		t.Errorf("overhead alone limited the pod: %+v", r)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/a\040b\011c\134d`); got != "/a b\tc\\d" {
		t.Errorf("unescape = %q", got)
	}
	if got := unescapeMountPath(`/plain`); got != "/plain" {
		t.Errorf("unescape = %q", got)
	}
}
