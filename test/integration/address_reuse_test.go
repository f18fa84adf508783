package integration

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/test/framework"
)

// TestPodSandboxReusedAddressReachable: host-local hands a released address
// to the next pod, and the node's neighbour entry for it still names the
// old pod's MAC. The node must reach the new pod at once (the kubelet's
// probes do), not after the stale entry expires, up to a minute later.
func TestPodSandboxReusedAddressReachable(t *testing.T) {
	n, only := singleAddressNet(t)
	d := n.start(t)
	kept := false
	reach := func(name string) (id, ip, mac string) {
		t.Helper()
		id = runPod(t, d, n.podConfig(name))
		p := inspectPod(t, d, id)
		// Another port on the bridge (made by the first ADD): with none
		// left, the bridge loses its carrier between the pods and the kernel
		// flushes its neighbours, which hides what a busy node sees.
		if !kept {
			kept = true
			addPort(t, n.bridge, n.bridge+"k")
		}
		ip = p.status.Network.Ip
		if ip != only {
			t.Fatalf("%s got %q, want the only address %s", name, ip, only)
		}
		_ = inNamespaces(t, func() error {
			ifc, err := net.InterfaceByName("eth0")
			if err == nil {
				mac = ifc.HardwareAddr.String()
			}
			return err
		}, p.NetNS)
		lis := listenIn(t, p.NetNS, "0.0.0.0:8080", "hello from "+name)
		defer lis.Close()
		// A generous bound: the stale entry black-holes for 15-45 s, a
		// reachable pod answers at once even on a busy machine.
		got, err := readFrom(func() (net.Conn, error) {
			return net.DialTimeout("tcp4", net.JoinHostPort(ip, "8080"), 10*time.Second)
		})
		if err != nil || got != "hello from "+name {
			neigh, _ := exec.Command("ip", "neigh", "show", ip).CombinedOutput()
			t.Errorf("node → %s (%s, mac %s): %q, %v; neighbour entry: %s", name, ip, mac, got, err, neigh)
		}
		return id, ip, mac
	}

	idA, _, macA := reach("pod-a")
	removePod(t, d, idA)
	// The address is released after StopPodSandbox, in the background.
	deadline := time.Now().Add(time.Minute)
	for len(ipamAllocations(filepath.Join(n.ipamDir, n.bridge))) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	idB, _, macB := reach("pod-b")
	defer removePod(t, d, idB)
	if macA == macB {
		t.Fatalf("both pods had MAC %s: the test proves nothing", macA)
	}
}

// addPort puts one end of a new veth pair on bridge, both ends up, and
// deletes the pair when the test ends.
func addPort(t *testing.T, bridge, name string) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", name, "type", "veth", "peer", "name", name + "p"},
		{"link", "set", name, "master", bridge, "up"},
		{"link", "set", name + "p", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
}

// singleAddressNet is a pod network of its own whose host-local range
// holds one address, only.
func singleAddressNet(t *testing.T) (n *podNet, only string) {
	t.Helper()
	n = newPodNet(t, framework.NewDirs(t))
	only = strings.TrimSuffix(n.gateway, ".1") + ".9"
	n.writeConf(t, fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[`+
		`{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":%q,"rangeStart":%q,"rangeEnd":%q}]],"dataDir":%q}},`+
		`{"type":"loopback"}]}`, n.bridge, n.bridge, n.subnet, only, only, n.ipamDir))
	return n, only
}
