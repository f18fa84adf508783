package validate

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

func pod() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web-0", Namespace: "default", Uid: "0b7c3c4e-3a4f-4c61-9a8e-1f0b3c2d4e5f"},
		Hostname: "web-0",
		DnsConfig: &runtimeapi.DNSConfig{
			Servers:  []string{"10.96.0.10", "fd00::a", "fe80::1%eth0"},
			Searches: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local", "_tcp.example.org."},
			Options:  []string{"ndots:5", "edns0", "single-request-reopen"},
		},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"}},
		LogDirectory: "/var/log/pods/default_web-0_0b7c",
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/burstable/pod0b7c",
			Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "net/ipv4/conf/eth0.1/forwarding": "1", "kernel.sem": "250 32000 100 128"},
			Resources:    &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1", HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}}},
		},
	}
}

func ctr() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: "app"},
		Image:      &runtimeapi.ImageSpec{Image: "busybox"},
		Command:    []string{"sh", "-c", "echo 'a b'\n"},
		Args:       []string{""},
		WorkingDir: "/srv",
		Envs:       []*runtimeapi.KeyValue{{Key: "PATH", Value: []byte("/bin")}, {Key: "MULTI", Value: []byte("a\nb=c")}},
		Mounts:     []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/tmp/x"}},
		Devices:    []*runtimeapi.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rwm"}},
		LogPath:    "app/0.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			CpusetMems: "0", Unified: map[string]string{"memory.high": "max", "cpu.weight": "100"},
		}},
	}
}

func TestValidAccepted(t *testing.T) {
	if err := PodSandbox(pod()); err != nil {
		t.Errorf("pod: %v", err)
	}
	if err := Container(ctr()); err != nil {
		t.Errorf("container: %v", err)
	}
	// The longest names Kubernetes allows.
	p := pod()
	p.Metadata.Name = strings.Repeat("a", MaxNameLen)
	p.Metadata.Namespace = strings.Repeat("n", MaxNamespaceLen)
	p.Hostname = strings.Repeat("h", 63)
	if err := PodSandbox(p); err != nil {
		t.Errorf("longest names: %v", err)
	}
	// A setHostnameAsFQDN pod's name on a node without a cluster domain.
	p = pod()
	p.Hostname = "hostfqdn-75011.t.hostfqdn-8171.svc."
	if err := PodSandbox(p); err != nil {
		t.Errorf("FQDN with a trailing dot: %v", err)
	}
	// crictl's and critest's configs.
	p = &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "PodSandbox-for-test-8c2e", Namespace: "cri-test-namespace", Uid: "hdishd83djaidwnduwk28bcsb"}}
	if err := PodSandbox(p); err != nil {
		t.Errorf("critest pod: %v", err)
	}
}

func TestRefused(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	for _, tc := range []struct {
		name  string
		pod   func(*runtimeapi.PodSandboxConfig)
		ctr   func(*runtimeapi.ContainerConfig)
		field string
	}{
		{name: "no metadata", pod: func(p *runtimeapi.PodSandboxConfig) { p.Metadata = nil }, field: "metadata"},
		{name: "long pod name", pod: func(p *runtimeapi.PodSandboxConfig) { p.Metadata.Name = long }, field: "metadata.name"},
		{name: "pod name 254", pod: func(p *runtimeapi.PodSandboxConfig) { p.Metadata.Name = strings.Repeat("a", 254) }, field: "longer than 253"},
		{name: "CNI_ARGS separator in name", pod: func(p *runtimeapi.PodSandboxConfig) { p.Metadata.Name = "a;IgnoreUnknown=0" }, field: "metadata.name"},
		{name: "long namespace", pod: func(p *runtimeapi.PodSandboxConfig) { p.Metadata.Namespace = strings.Repeat("n", 64) }, field: "metadata.namespace"},
		{name: "empty uid", pod: func(p *runtimeapi.PodSandboxConfig) { p.Metadata.Uid = "" }, field: "metadata.uid"},
		{name: "slash in uid", pod: func(p *runtimeapi.PodSandboxConfig) { p.Metadata.Uid = "../x" }, field: "metadata.uid"},
		{name: "hostname newline", pod: func(p *runtimeapi.PodSandboxConfig) { p.Hostname = "a\n10.0.0.1 evil" }, field: "hostname"},
		{name: "hostname long", pod: func(p *runtimeapi.PodSandboxConfig) { p.Hostname = strings.Repeat("a.", 40) + "b" }, field: "hostname"},
		{name: "hostname label", pod: func(p *runtimeapi.PodSandboxConfig) { p.Hostname = "-a" }, field: "hostname"},
		{name: "hostname dot only", pod: func(p *runtimeapi.PodSandboxConfig) { p.Hostname = "." }, field: "hostname"},
		{name: "hostname two trailing dots", pod: func(p *runtimeapi.PodSandboxConfig) { p.Hostname = "a.." }, field: "hostname"},
		{name: "dns server newline", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Servers = []string{"1.1.1.1\nnameserver 6.6.6.6"} }, field: "dns_config.servers"},
		{name: "dns server name", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Servers = []string{"dns.example"} }, field: "dns_config.servers"},
		{name: "dns server zone space", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Servers = []string{"fe80::1%eth0 x"} }, field: "dns_config.servers"},
		{name: "dns 4 servers", pod: func(p *runtimeapi.PodSandboxConfig) {
			p.DnsConfig.Servers = []string{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"}
		}, field: "more than 3"},
		{name: "dns search newline", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Searches = []string{"a\nnameserver 6.6.6.6"} }, field: "dns_config.searches"},
		{name: "dns search space", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Searches = []string{"a b"} }, field: "dns_config.searches"},
		{name: "dns 33 searches", pod: func(p *runtimeapi.PodSandboxConfig) {
			p.DnsConfig.Searches = strings.Fields(strings.Repeat("a.b ", 33))
		}, field: "more than 32"},
		{name: "dns search chars", pod: func(p *runtimeapi.PodSandboxConfig) {
			p.DnsConfig.Searches = strings.Fields(strings.Repeat(strings.Repeat("a", 63)+"."+strings.Repeat("b", 63)+" ", 17))
		}, field: "more than 2048"},
		{name: "dns option newline", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Options = []string{"ndots:1\nnameserver 6.6.6.6"} }, field: "dns_config.options"},
		{name: "dns option tab", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Options = []string{"a\tb"} }, field: "dns_config.options"},
		{name: "dns option empty", pod: func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Options = []string{""} }, field: "dns_config.options"},
		{name: "host ip", pod: func(p *runtimeapi.PodSandboxConfig) { p.PortMappings[0].HostIp = "localhost" }, field: "port_mappings.host_ip"},
		{name: "log dir relative", pod: func(p *runtimeapi.PodSandboxConfig) { p.LogDirectory = "logs" }, field: "log_directory"},
		{name: "log dir NUL", pod: func(p *runtimeapi.PodSandboxConfig) { p.LogDirectory = "/var/log\x00x" }, field: "log_directory"},
		{name: "cgroup parent dotdot", pod: func(p *runtimeapi.PodSandboxConfig) { p.Linux.CgroupParent = "/kubepods/../../x" }, field: "linux.cgroup_parent"},
		{name: "cgroup parent newline", pod: func(p *runtimeapi.PodSandboxConfig) { p.Linux.CgroupParent = "/a\nb" }, field: "linux.cgroup_parent"},
		{name: "sysctl value newline", pod: func(p *runtimeapi.PodSandboxConfig) {
			p.Linux.Sysctls = map[string]string{"net.core.somaxconn": "1\n2"}
		}, field: "linux.sysctls"},
		{name: "sysctl name dotdot", pod: func(p *runtimeapi.PodSandboxConfig) { p.Linux.Sysctls = map[string]string{"net/../../kernel/x": "1"} }, field: "linux.sysctls"},
		{name: "sysctl name space", pod: func(p *runtimeapi.PodSandboxConfig) { p.Linux.Sysctls = map[string]string{"net.core .x": "1"} }, field: "linux.sysctls"},
		{name: "pod cpuset syntax", pod: func(p *runtimeapi.PodSandboxConfig) { p.Linux.Resources.CpusetCpus = "0-" }, field: "linux.resources.cpuset_cpus"},
		{name: "pod overhead hugepage", pod: func(p *runtimeapi.PodSandboxConfig) {
			p.Linux.Overhead = &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2M"}}}
		}, field: "linux.overhead.hugepage_limits"},

		{name: "no config", ctr: func(c *runtimeapi.ContainerConfig) { *c = runtimeapi.ContainerConfig{} }, field: "metadata.name"},
		{name: "long container name", ctr: func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = long }, field: "metadata.name"},
		{name: "container name slash", ctr: func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "a/b" }, field: "metadata.name"},
		{name: "env key NUL", ctr: func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A\x00B", Value: []byte("1")}}
		}, field: "envs.key"},
		{name: "env key =", ctr: func(c *runtimeapi.ContainerConfig) { c.Envs = []*runtimeapi.KeyValue{{Key: "A=B", Value: []byte("1")}} }, field: "envs.key"},
		{name: "env key empty", ctr: func(c *runtimeapi.ContainerConfig) { c.Envs = []*runtimeapi.KeyValue{{Key: "", Value: []byte("1")}} }, field: "envs.key"},
		{name: "env value NUL", ctr: func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1\x002")}}
		}, field: "envs[\"A\"].value"},
		{name: "command NUL", ctr: func(c *runtimeapi.ContainerConfig) { c.Command = []string{"sh", "-c\x00x"} }, field: "command[1]"},
		{name: "args NUL", ctr: func(c *runtimeapi.ContainerConfig) { c.Args = []string{"\x00"} }, field: "args[0]"},
		{name: "working dir relative", ctr: func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "srv" }, field: "working_dir"},
		{name: "mount NUL", ctr: func(c *runtimeapi.ContainerConfig) { c.Mounts[0].HostPath = "/tmp\x00" }, field: "mounts.host_path"},
		{name: "device permissions", ctr: func(c *runtimeapi.ContainerConfig) { c.Devices[0].Permissions = "rwx" }, field: "devices.permissions"},
		{name: "log path NUL", ctr: func(c *runtimeapi.ContainerConfig) { c.LogPath = "a\x00" }, field: "log_path"},
		{name: "unified file path", ctr: func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources.Unified = map[string]string{"../../cgroup.procs": "1"}
		}, field: "linux.resources.unified"},
		{name: "unified value newline", ctr: func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources.Unified = map[string]string{"memory.high": "1\n2"}
		}, field: "linux.resources.unified"},
		{name: "cpuset mems backwards", ctr: func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.CpusetMems = "3-1" }, field: "linux.resources.cpuset_mems"},
		{name: "cpuset huge", ctr: func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.CpusetCpus = "0-999999999" }, field: "linux.resources.cpuset_cpus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.pod != nil {
				p := pod()
				tc.pod(p)
				err = PodSandbox(p)
			} else {
				c := ctr()
				tc.ctr(c)
				err = Container(c)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want InvalidArgument naming %q", err, tc.field)
			}
			if len(err.Error()) > 400 {
				t.Errorf("message of %d bytes: the value must be cut short", len(err.Error()))
			}
		})
	}
}

func TestExecCmd(t *testing.T) {
	for _, cmd := range [][]string{nil, {}, {""}, {"sh", "a\x00"}} {
		if err := ExecCmd(cmd); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v, want InvalidArgument", cmd, err)
		}
	}
	if err := ExecCmd([]string{"sh", "-c", ""}); err != nil {
		t.Errorf("empty argument: %v", err)
	}
}
