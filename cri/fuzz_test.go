package cri

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/spec"
)

// The fuzz tests feed random RunPodSandbox and CreateContainer requests
// (protobuf bytes, as a client sends them) through the checks the handlers
// run before any work: no input may panic, a refusal is InvalidArgument,
// and an accepted request carries nothing that would split a line of the
// file it is written to. `go test` runs the seeds only; to fuzz:
//
//	go test ./cri -run XXX -fuzz FuzzPodSandboxRequest -fuzztime 2m

// fuzzServer checks against a fixed node, so that a run does not depend on
// the machine.
func fuzzServer() *Server {
	node := spec.Node{CPUs: map[int]bool{0: true, 1: true}, Mems: map[int]bool{0: true}, HugepageSizes: map[string]bool{"2MB": true}}
	return NewServer(Options{Node: func() spec.Node { return node }})
}

func seedPod() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"},
		Hostname:     "web",
		LogDirectory: "/var/log/pods/x",
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"svc.cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods",
			Sysctls:      map[string]string{"net.core.somaxconn": "1024"},
			Resources:    &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1", MemoryLimitInBytes: 64 << 20},
		},
	}
}

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// refusedAs fails unless err is nil or InvalidArgument; it reports whether
// the request was accepted.
func refusedAs(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return true
	}
	if c := status.Code(toStatus(err)); c != codes.InvalidArgument {
		t.Fatalf("refused with %v, want InvalidArgument: %v", c, err)
	}
	return false
}

// oneToken tells whether s could not split a line of a file.
func oneToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

func FuzzPodSandboxRequest(f *testing.F) {
	f.Add(mustMarshal(f, &runtimeapi.RunPodSandboxRequest{Config: seedPod()}))
	bad := seedPod()
	bad.DnsConfig.Servers = []string{"10.0.0.10\nnameserver 6.6.6.6"}
	bad.Linux.Resources.CpusetCpus = "0-7"
	f.Add(mustMarshal(f, &runtimeapi.RunPodSandboxRequest{Config: bad}))
	f.Add([]byte{})
	s := fuzzServer()
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &runtimeapi.RunPodSandboxRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		cfg, err := s.podRequest(req)
		if !refusedAs(t, err) {
			return
		}
		if cfg.Hostname != "" && !oneToken(cfg.Hostname) {
			t.Fatalf("hostname %q accepted", cfg.Hostname)
		}
		if d := cfg.DNS; d != nil {
			for _, v := range append(append(append([]string{}, d.Servers...), d.Searches...), d.Options...) {
				if !oneToken(v) {
					t.Fatalf("resolv.conf entry %q accepted", v)
				}
			}
		}
		for k, v := range cfg.Sysctls {
			if strings.ContainsAny(v, "\n\r\x00") || strings.Contains(k, "..") {
				t.Fatalf("sysctl %q=%q accepted", k, v)
			}
		}
		md := cfg.Metadata
		for _, v := range []string{md.Name, md.Namespace, md.UID} {
			if !oneToken(v) || strings.ContainsAny(v, ";=/") || len(v) > 253 {
				t.Fatalf("metadata %q accepted", v)
			}
		}
	})
}

func FuzzCreateContainerRequest(f *testing.F) {
	ctr := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", "echo hi"},
		Envs:     []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			CpusetCpus: "1", MemoryLimitInBytes: 16 << 20, Unified: map[string]string{"memory.high": "max"},
		}},
	}
	f.Add(mustMarshal(f, &runtimeapi.CreateContainerRequest{PodSandboxId: "p", Config: ctr, SandboxConfig: seedPod()}))
	bad := proto.Clone(ctr).(*runtimeapi.ContainerConfig)
	bad.Envs = []*runtimeapi.KeyValue{{Key: "A\x00=", Value: []byte("1")}}
	bad.Linux.Resources.MemoryLimitInBytes = 4096
	f.Add(mustMarshal(f, &runtimeapi.CreateContainerRequest{PodSandboxId: "p", Config: bad}))
	s := fuzzServer()
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &runtimeapi.CreateContainerRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		if !refusedAs(t, s.checkCreate(req)) {
			return
		}
		c := req.GetConfig()
		for _, kv := range c.GetEnvs() {
			if kv.GetKey() == "" || strings.ContainsAny(kv.GetKey(), "=\x00") || strings.ContainsRune(string(kv.GetValue()), 0) {
				t.Fatalf("env %q=%q accepted", kv.GetKey(), kv.GetValue())
			}
		}
		for _, a := range append(append([]string{}, c.GetCommand()...), c.GetArgs()...) {
			if strings.ContainsRune(a, 0) {
				t.Fatalf("argv %q accepted", a)
			}
		}
		r := c.GetLinux().GetResources()
		if v := r.GetMemoryLimitInBytes(); v > 0 && v < spec.MinMemoryLimit {
			t.Fatalf("memory limit %d accepted", v)
		}
		for k, v := range r.GetUnified() {
			if strings.ContainsAny(k, "/\x00") || strings.ContainsAny(v, "\n\x00") {
				t.Fatalf("unified %q=%q accepted", k, v)
			}
		}
	})
}
