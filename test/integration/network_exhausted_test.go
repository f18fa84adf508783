package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// TestPodSandboxNetworkExhausted: a pod network whose host-local range has
// one address. The second pod's RunPodSandbox must fail with
// ResourceExhausted naming the network and host-local's error, and leave
// nothing of that pod (record, pin, veth, address, cgroup, shim, mount,
// CNI cache); once the first pod is gone a new pod gets the address.
func TestPodSandboxNetworkExhausted(t *testing.T) {
	n, only := singleAddressNet(t)
	d := n.start(t)
	ipamDir := filepath.Join(n.ipamDir, n.bridge)

	idA := runPod(t, d, n.podConfig("pod-a"))
	if ip := inspectPod(t, d, idA).status.Network.Ip; ip != only {
		removePod(t, d, idA)
		t.Fatalf("pod-a got %q, want the only address %s", ip, only)
	}
	before := podFootprint(n, d)
	if len(before["pins"]) != 1 || len(before["veths"]) != 1 || !slices.Equal(before["addresses"], []string{only + " " + idA}) {
		removePod(t, d, idA)
		t.Fatalf("one pod's footprint is not one pin, one veth and its address: %v", before)
	}

	_, err := d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("pod-b")})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("RunPodSandbox on a full network: %v, want ResourceExhausted", err)
	}
	for _, want := range []string{n.bridge, "no IP addresses available in range set"} {
		if err != nil && !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	// The veth pair goes with the CNI DEL of the failed run; a generous
	// bound all the same, as the kernel may finish a dropped netns late.
	after := podFootprint(n, d)
	for end := time.Now().Add(30 * time.Second); !footprintsEqual(before, after) && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		after = podFootprint(n, d)
	}
	if !footprintsEqual(before, after) {
		t.Errorf("the failed run left something:\nbefore %v\nafter  %v\n%s", before, after, d.Logs())
	}
	resp, lerr := d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if lerr != nil || len(resp.Items) != 1 || resp.Items[0].Id != idA {
		t.Errorf("pods after the failed run: %v %v, want only %s", resp, lerr, idA)
	}

	removePod(t, d, idA)
	// The address is released after StopPodSandbox, in the background.
	for end := time.Now().Add(time.Minute); len(ipamAllocations(ipamDir)) > 0 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	idC := runPod(t, d, n.podConfig("pod-c"))
	if ip := inspectPod(t, d, idC).status.Network.Ip; ip != only {
		t.Errorf("pod-c after pod-a left got %q, want %s", ip, only)
	}
	removePod(t, d, idC)
	if left := n.leftoversAfter(30*time.Second, filepath.Join(d.State, "ns")); len(left) > 0 {
		t.Errorf("after the pods were removed: %v", left)
	}
}

// podFootprint is what the pods of test n hold on the node, by kind.
func podFootprint(n *podNet, d *framework.Daemon) map[string][]string {
	names := func(dir string) []string {
		ents, _ := os.ReadDir(dir)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	fp := map[string][]string{
		"records":   names(filepath.Join(d.State, "pods")),
		"pins":      names(filepath.Join(d.State, "ns")),
		"cni cache": names(filepath.Join(d.Root, "cni", "results")),
		"mounts":    mountsBelow(n.dir),
	}
	// host-local's store: a file per address holding the owner's id.
	ipamDir := filepath.Join(n.ipamDir, n.bridge)
	for _, ip := range ipamAllocations(ipamDir) {
		b, _ := os.ReadFile(filepath.Join(ipamDir, ip))
		owner, _, _ := strings.Cut(string(b), "\n")
		fp["addresses"] = append(fp["addresses"], ip+" "+strings.TrimSpace(owner))
	}
	out, _ := exec.Command("ip", "-o", "link", "show", "master", n.bridge).Output()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			fp["veths"] = append(fp["veths"], name)
		}
	}
	fp["cgroups"], _ = filepath.Glob("/sys/fs/cgroup/*" + n.cgroupParent + "/*")
	for _, pid := range shimsMentioning(n.dir) {
		fp["shims"] = append(fp["shims"], fmt.Sprint(pid))
	}
	return fp
}

func footprintsEqual(a, b map[string][]string) bool {
	for _, m := range []map[string][]string{a, b} {
		for k := range m {
			if !slices.Equal(a[k], b[k]) {
				return false
			}
		}
	}
	return true
}
