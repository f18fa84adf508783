package cni

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

func TestRuntimeConf(t *testing.T) {
	rt := runtimeConf(Pod{ID: "id1", Name: "n", Namespace: "ns", UID: "u", NetNS: "/x/net",
		PortMappings: []PortMapping{{HostPort: 80, ContainerPort: 8080, Protocol: "tcp", HostIP: "127.0.0.1"}}, PodCIDR: "10.9.0.0/24"})
	args := map[string]string{}
	for _, a := range rt.Args {
		args[a[0]] = a[1]
	}
	want := map[string]string{"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "n", "K8S_POD_INFRA_CONTAINER_ID": "id1", "K8S_POD_UID": "u"}
	if !reflect.DeepEqual(args, want) || rt.IfName != "eth0" || rt.NetNS != "/x/net" {
		t.Errorf("runtime conf %+v", rt)
	}
	b, _ := json.Marshal(rt.CapabilityArgs)
	if string(b) != `{"ipRanges":[[{"subnet":"10.9.0.0/24"}]],"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"tcp","hostIP":"127.0.0.1"}]}` {
		t.Errorf("capability args %s", b)
	}
	if rt := runtimeConf(Pod{ID: "x"}); len(rt.CapabilityArgs) != 0 {
		t.Errorf("capabilities without mappings or CIDR: %v", rt.CapabilityArgs)
	}
}

func TestAttachmentOfKeepsPodInterfaceIPv4First(t *testing.T) {
	host, pod := 0, 1
	res := &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "veth1"}, {Name: "eth0", Sandbox: "/x/net"}},
		IPs: []*types100.IPConfig{
			{Interface: &pod, Address: net.IPNet{IP: net.ParseIP("fd00::2"), Mask: net.CIDRMask(64, 128)}},
			{Interface: &host, Address: net.IPNet{IP: net.ParseIP("10.0.0.1"), Mask: net.CIDRMask(24, 32)}},
			{Interface: &pod, Address: net.IPNet{IP: net.ParseIP("10.0.0.2").To4(), Mask: net.CIDRMask(24, 32)}},
		},
	}
	att, err := attachmentOf("n", res)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(att.IPs, []string{"10.0.0.2", "fd00::2"}) {
		t.Errorf("IPs = %v", att.IPs)
	}
}

func TestLoadNetworkFirstAndSingleConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("20-b.conflist", `{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"},{"type":"loopback"}]}`)
	write("10-a.conf", `{"cniVersion":"0.4.0","name":"a","type":"ptp"}`)
	list, err := LoadNetwork(dir)
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "a" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "ptp" {
		t.Errorf("loaded %s with %d plugins", list.Name, len(list.Plugins))
	}
	os.Remove(filepath.Join(dir, "10-a.conf"))
	list, err = LoadNetwork(dir)
	if err != nil || list.Name != "b" || len(withoutIdle(list, runtimeConf(Pod{})).Plugins) != 1 || len(list.Plugins) != 2 {
		t.Errorf("conflist: %v %+v", err, list)
	}
	if _, err := LoadNetwork(t.TempDir()); err == nil {
		t.Errorf("empty dir loaded a network")
	}
}

func TestWithoutIdle(t *testing.T) {
	list, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}},{"type":"loopback"},{"type":"bandwidth","capabilities":{"bandwidth":true}},{"type":"tuning"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	types := func(l *libcni.NetworkConfigList) (out []string) {
		for _, p := range l.Plugins {
			out = append(out, p.Network.Type)
		}
		return out
	}
	if got := types(withoutIdle(list, runtimeConf(Pod{}))); !reflect.DeepEqual(got, []string{"bridge", "tuning"}) {
		t.Errorf("no port mappings: %v", got)
	}
	withPorts := runtimeConf(Pod{PortMappings: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}})
	if got := types(withoutIdle(list, withPorts)); !reflect.DeepEqual(got, []string{"bridge", "portmap", "tuning"}) {
		t.Errorf("with port mappings: %v", got)
	}
	limited := runtimeConf(Pod{Bandwidth: &Bandwidth{IngressRate: 1}})
	if got := types(withoutIdle(list, limited)); !reflect.DeepEqual(got, []string{"bridge", "bandwidth", "tuning"}) {
		t.Errorf("with bandwidth: %v", got)
	}
	static, _ := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bandwidth","egressRate":1000,"egressBurst":1000}]}`))
	if got := types(withoutIdle(static, runtimeConf(Pod{}))); !reflect.DeepEqual(got, []string{"bandwidth"}) {
		t.Errorf("static bandwidth config dropped: %v", got)
	}
	if len(list.Plugins) != 5 {
		t.Errorf("the loaded list changed")
	}
}

func TestBandwidthFromAnnotations(t *testing.T) {
	bw, err := BandwidthFromAnnotations(map[string]string{IngressBandwidthAnnotation: "10M", EgressBandwidthAnnotation: "1Gi"})
	if err != nil {
		t.Fatal(err)
	}
	if bw.IngressRate != 10_000_000 || bw.EgressRate != 1<<30 || bw.IngressBurst == 0 || bw.EgressBurst == 0 {
		t.Errorf("bandwidth %+v", bw)
	}
	if bw, err := BandwidthFromAnnotations(map[string]string{"other": "1"}); bw != nil || err != nil {
		t.Errorf("no annotations: %v %v", bw, err)
	}
	for _, bad := range []string{"ten", "-1M", "0", "1.5M", "99999999999999999999E"} {
		if _, err := BandwidthFromAnnotations(map[string]string{EgressBandwidthAnnotation: bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
