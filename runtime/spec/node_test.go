package spec

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

func TestCheckResources(t *testing.T) {
	n := Node{CPUs: map[int]bool{0: true, 1: true, 2: true, 3: true}, Mems: map[int]bool{0: true}, HugepageSizes: map[string]bool{"2MB": true}}
	ok := []*runtimeapi.LinuxContainerResources{
		nil,
		{},
		{CpusetCpus: "0-3", CpusetMems: "0", MemoryLimitInBytes: MinMemoryLimit},
		{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}},
	}
	for _, r := range ok {
		if err := n.CheckResources("linux.resources", r); err != nil {
			t.Errorf("%v: %v", r, err)
		}
	}
	for _, tc := range []struct {
		r    *runtimeapi.LinuxContainerResources
		want string
	}{
		{&runtimeapi.LinuxContainerResources{CpusetCpus: "2-4"}, "linux.resources.cpuset_cpus \"2-4\": 4 is not among this node's CPUs (0-3)"},
		{&runtimeapi.LinuxContainerResources{CpusetMems: "1"}, "linux.resources.cpuset_mems \"1\": 1 is not among this node's memory nodes (0)"},
		{&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20}, "memory_limit_in_bytes 1048576: must be at least 6291456 (6 MiB)"},
		{&runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "1GB", Limit: 1 << 30}}}, "page_size \"1GB\": this node has page sizes 2MB"},
		{&runtimeapi.LinuxContainerResources{CpusetCpus: "x"}, "cpuset_cpus \"x\""},
	} {
		err := n.CheckResources("linux.resources", tc.r)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want InvalidArgument with %q", tc.r, err, tc.want)
		}
	}
	// What could not be read is not checked; no hugepages is a node without any.
	if err := (Node{}).CheckResources("r", &runtimeapi.LinuxContainerResources{CpusetCpus: "100"}); err != nil {
		t.Errorf("unknown CPUs: %v", err)
	}
	if err := (Node{HugepageSizes: map[string]bool{}}).CheckResources("r", &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}}}); err == nil || !strings.Contains(err.Error(), "no hugepages") {
		t.Errorf("no hugepages: %v", err)
	}
}

func TestPageSizeName(t *testing.T) {
	for b, want := range map[uint64]string{2 << 20: "2MB", 1 << 30: "1GB", 64 << 10: "64KB", 32 << 20: "32MB", 1536 << 10: "1536KB"} {
		if got := PageSizeName(b); got != want {
			t.Errorf("%d: %s, want %s", b, got, want)
		}
	}
}

func TestReadNode(t *testing.T) {
	n := ReadNode()
	if len(n.CPUs) == 0 || !n.CPUs[0] || len(n.Mems) == 0 {
		t.Errorf("ReadNode: %+v", n)
	}
}
