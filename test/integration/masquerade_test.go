package integration

import (
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// masqChainOf is berthd's chain for a network (cni.Masquerade.Chain).
func masqChainOf(network string) string {
	return "BERTH-MASQ-" + fmt.Sprintf("%x", sha256.Sum256([]byte(network)))[:16]
}

// deleteMasquerade removes berthd's masquerade of a network: the jumps
// from POSTROUTING and the chain (berthd leaves them when it stops).
func deleteMasquerade(network, chain string) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for exec.Command(ipt, "-w", "-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", "berth masquerade of network "+network, "-j", chain).Run() == nil {
		}
		_ = exec.Command(ipt, "-w", "-t", "nat", "-F", chain).Run()
		_ = exec.Command(ipt, "-w", "-t", "nat", "-X", chain).Run()
	}
}

// natRules is iptables -t nat -S of a chain (all of nat when chain is "").
func natRules(t *testing.T, chain string) string {
	t.Helper()
	args := []string{"-w", "-t", "nat", "-S"}
	if chain != "" {
		args = append(args, chain)
	}
	out, err := exec.Command("iptables", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// TestMasqueradePerSubnet: a network with "berthMasquerade": true (and the
// bridge plugin's ipMasq off) gets one masquerade for its subnet from
// berthd's start, the same whether berthd starts once or again, mended when
// damaged; a pod on it has no per-pod NAT chain, and its traffic to a host
// outside the node leaves with the node's address.
func TestMasqueradePerSubnet(t *testing.T) {
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	chain := masqChainOf(n.bridge)
	// Registered after newPodNet: runs before its leftover check.
	t.Cleanup(func() { deleteMasquerade(n.bridge, chain) })
	// The test's usual network with a default route (the pod reaches the
	// uplink through the bridge) and the key.
	conf := strings.Replace(n.conflist(), `"dataDir":`, `"routes":[{"dst":"0.0.0.0/0"}],"dataDir":`, 1)
	n.writeConf(t, strings.Replace(conf, `"plugins":`, `"berthMasquerade":true,"plugins":`, 1))

	comment := `"berth masquerade of network ` + n.bridge + `"`
	want := strings.Join([]string{
		"-N " + chain,
		fmt.Sprintf("-A %s -s %s -d %s -m comment --comment %s -j ACCEPT", chain, n.subnet, n.subnet, comment),
		fmt.Sprintf("-A %s -s %s -d 224.0.0.0/4 -m comment --comment %s -j ACCEPT", chain, n.subnet, comment),
		fmt.Sprintf("-A %s -s %s -m comment --comment %s -j MASQUERADE", chain, n.subnet, comment),
	}, "\n") + "\n"
	jump := fmt.Sprintf("-A POSTROUTING -m comment --comment %s -j %s", comment, chain)
	check := func(step string) {
		t.Helper()
		if got := natRules(t, chain); got != want {
			t.Fatalf("%s: chain %s is\n%s\nwant\n%s", step, chain, got, want)
		}
		if k := strings.Count(natRules(t, "POSTROUTING"), jump+"\n"); k != 1 {
			t.Fatalf("%s: %d jumps %q in POSTROUTING, want 1", step, k, jump)
		}
	}

	e := &ctrEnv{podNet: n, d: n.start(t, "-v", "4")}
	check("first start")
	if err := e.d.Stop(t); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}
	// Stopped, the rules stay (running pods need them); a second start
	// adds nothing.
	check("stopped")
	e.restart(t)
	check("second start")
	// A rule lost and a stranger in the chain: the next start mends it.
	if err := e.d.Stop(t); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}
	mustRun(t, "iptables", "-w", "-t", "nat", "-D", chain, "1")
	mustRun(t, "iptables", "-w", "-t", "nat", "-A", chain, "-s", "192.0.2.77/32", "-j", "RETURN")
	e.restart(t)
	check("start after damage")

	t.Cleanup(func() {
		resp, err := e.d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
		if err == nil {
			for _, p := range resp.Items {
				removePod(t, e.d, p.Id)
			}
		}
	})
	if _, err := e.d.Images.PullImage(framework.Context(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}}); err != nil {
		t.Fatalf("pull busybox: %v", err)
	}

	// The "uplink": a netns joined to the node by a veth pair, TEST-NET-1
	// addresses of this test's own (a /30 of 192.0.2.0/24 by the dir's hash).
	h := fnv.New32a()
	h.Write([]byte(dir))
	v := h.Sum32()
	ns, hostIf, nsIf := fmt.Sprintf("bu%08x", v), fmt.Sprintf("bu%08xh", v), fmt.Sprintf("bu%08xn", v)
	base := 4 * (v % 64)
	hostIP, peerIP := fmt.Sprintf("192.0.2.%d", base+1), fmt.Sprintf("192.0.2.%d", base+2)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	mustRun(t, "ip", "netns", "add", ns)
	mustRun(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	mustRun(t, "ip", "addr", "add", hostIP+"/30", "dev", hostIf)
	mustRun(t, "ip", "link", "set", hostIf, "up")
	mustRun(t, "ip", "-n", ns, "addr", "add", peerIP+"/30", "dev", nsIf)
	mustRun(t, "ip", "-n", ns, "link", "set", nsIf, "up")
	// A way back to any source: without the masquerade the connection
	// works too, and shows the pod's address.
	mustRun(t, "ip", "-n", ns, "route", "add", "default", "via", hostIP)

	// The node forwards between the bridge and the uplink.
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	if old, err := os.ReadFile(fwd); err != nil {
		t.Fatal(err)
	} else if strings.TrimSpace(string(old)) != "1" {
		t.Cleanup(func() { _ = os.WriteFile(fwd, old, 0o644) })
		if err := os.WriteFile(fwd, []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, _ := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); !strings.Contains(string(out), "-P FORWARD ACCEPT") {
		for _, r := range [][]string{{"-i", n.bridge, "-o", hostIf, "-j", "ACCEPT"}, {"-i", hostIf, "-o", n.bridge, "-j", "ACCEPT"}} {
			mustRun(t, append([]string{"iptables", "-w", "-I", "FORWARD"}, r...)...)
			t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-w", "-D", "FORWARD"}, r...)...).Run() })
		}
	}

	var lis net.Listener
	if err := inNamespaces(t, func() (err error) {
		lis, err = net.Listen("tcp4", peerIP+":8080")
		return err
	}, "/run/netns/"+ns); err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { lis.Close() })
	peers := make(chan string, 4)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			_, _ = c.Write([]byte("hi\n"))
			c.Close()
		}
	}()

	// A hostPort too: portmap runs in the list with the key as well.
	podCfg := n.podConfig("masq")
	podCfg.LogDirectory = filepath.Join(dir, "logs", "masq")
	podCfg.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: n.hostPort}}
	podID := runPod(t, e.d, podCfg)
	podIP := inspectPod(t, e.d, podID).status.Network.Ip
	if _, sub, _ := net.ParseCIDR(n.subnet); net.ParseIP(podIP) == nil || !sub.Contains(net.ParseIP(podIP)) {
		t.Fatalf("pod IP %q, want one of %s", podIP, n.subnet)
	}
	// The bridge plugin's ipMasq would jump from POSTROUTING to a chain of
	// the pod's own, for its address (portmap's rules are elsewhere).
	if rules := natRules(t, "POSTROUTING"); strings.Contains(rules, podID) || strings.Contains(rules, podIP+"/32") {
		t.Fatalf("a per-pod NAT rule for %s (%s):\n%s", podID, podIP, rules)
	}
	if rules := natRules(t, ""); !strings.Contains(rules, podID) {
		t.Fatalf("no portmap rule of pod %s:\n%s", podID, rules)
	}
	check("with a pod")

	ctr := e.run(t, podID, podCfg, ctrConfig("client", "sleep", "3600"))
	res := e.execSync(t, ctr, "sh", "-c", "echo x | nc -w 10 "+peerIP+" 8080")
	if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "hi") {
		t.Fatalf("pod → %s:8080: exit %d, stdout %q, stderr %q", peerIP, res.ExitCode, res.Stdout, res.Stderr)
	}
	select {
	case peer := <-peers:
		if peer != hostIP {
			t.Fatalf("the uplink saw the connection from %s, want the node's %s (masqueraded; the pod is %s)", peer, hostIP, podIP)
		}
	default:
		t.Fatalf("the pod's nc answered but the listener accepted nothing")
	}
	removePod(t, e.d, podID)
}

// TestMasqueradeBadConfig: a berthMasquerade network with a subnet that is
// not a clean CIDR stops berthd at start, naming it, before any rule is made
// (not even for the network's good subnet).
func TestMasqueradeBadConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := framework.NewDirs(t)
	h := fnv.New32a()
	h.Write([]byte(dir))
	name := fmt.Sprintf("bbad%08x", h.Sum32())
	chain := masqChainOf(name)
	t.Cleanup(func() { deleteMasquerade(name, chain) })
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"berthMasquerade":true,"plugins":[`+
		`{"type":"bridge","bridge":%q,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.250.0.0/24"}],[{"subnet":"10.250.1.1/24"}]]}}]}`, name, name)
	writeFile(t, filepath.Join(dir, "net.d", "10-test.conflist"), conf)
	writeFile(t, filepath.Join(dir, "config.toml"), "")
	out, code := runBerthd(t, framework.Args(dir)...)
	if code == 0 || !strings.Contains(out, "10.250.1.1/24") || !strings.Contains(out, "has host bits set") || !strings.Contains(out, name) {
		t.Errorf("berthd exit %d, want an error naming the network and the subnet:\n%s", code, out)
	}
	if exec.Command("iptables", "-w", "-t", "nat", "-S", chain).Run() == nil {
		t.Errorf("chain %s made for a config berthd refused", chain)
	}
	if _, err := os.Stat(filepath.Join(dir, "berth.sock")); !os.IsNotExist(err) {
		t.Errorf("socket left behind after a config error")
	}
}

// TestMasqueradeDualStack: a network with an IPv4 and an IPv6 subnet gets
// its IPv4 rules from iptables and its IPv6 ones (multicast ff00::/8) from
// ip6tables, at berthd's start.
func TestMasqueradeDualStack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if exec.Command("ip6tables", "-w", "-t", "nat", "-S", "POSTROUTING").Run() != nil {
		t.Skip("no ip6tables nat table")
	}
	dir := framework.NewDirs(t)
	h := fnv.New32a()
	h.Write([]byte(dir))
	v := h.Sum32()
	name := fmt.Sprintf("bds%08x", v)
	v4, v6 := fmt.Sprintf("10.251.%d.0/24", v%256), fmt.Sprintf("fd00:%x:%x::/64", v>>16, v&0xffff)
	chain := masqChainOf(name)
	t.Cleanup(func() { deleteMasquerade(name, chain) })
	writeFile(t, filepath.Join(dir, "net.d", "10-test.conflist"), fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"berthMasquerade":true,"plugins":[`+
		`{"type":"bridge","bridge":%q,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":%q}],[{"subnet":%q}]],"dataDir":%q}}]}`,
		name, name, v6, v4, filepath.Join(dir, "ipam")))
	d := framework.StartDaemon(t, dir)
	comment := `"berth masquerade of network ` + name + `"`
	for _, f := range []struct{ ipt, subnet, multicast string }{{"iptables", v4, "224.0.0.0/4"}, {"ip6tables", v6, "ff00::/8"}} {
		out, err := exec.Command(f.ipt, "-w", "-t", "nat", "-S", chain).CombinedOutput()
		want := strings.Join([]string{
			"-N " + chain,
			fmt.Sprintf("-A %s -s %s -d %s -m comment --comment %s -j ACCEPT", chain, f.subnet, f.subnet, comment),
			fmt.Sprintf("-A %s -s %s -d %s -m comment --comment %s -j ACCEPT", chain, f.subnet, f.multicast, comment),
			fmt.Sprintf("-A %s -s %s -m comment --comment %s -j MASQUERADE", chain, f.subnet, comment),
		}, "\n") + "\n"
		if err != nil || string(out) != want {
			t.Errorf("%s -t nat -S %s: %v\n%s\nwant\n%s", f.ipt, chain, err, out, want)
		}
		post, _ := exec.Command(f.ipt, "-w", "-t", "nat", "-S", "POSTROUTING").Output()
		if k := strings.Count(string(post), "-j "+chain+"\n"); k != 1 {
			t.Errorf("%s: %d jumps to %s in POSTROUTING, want 1", f.ipt, k, chain)
		}
	}
	if err := d.Stop(t); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}
}

// TestMasqueradeConfigBrokenLater: the config read at a pod's ADD is checked
// too. Edited to a broken berthMasquerade subnet while berthd runs, a new
// pod fails with FailedPrecondition naming it, and leaves nothing.
func TestMasqueradeConfigBrokenLater(t *testing.T) {
	n := newPodNet(t, framework.NewDirs(t))
	chain := masqChainOf(n.bridge)
	t.Cleanup(func() { deleteMasquerade(n.bridge, chain) })
	good := strings.Replace(n.conflist(), `"plugins":`, `"berthMasquerade":true,"plugins":`, 1)
	n.writeConf(t, good)
	d := n.start(t)
	if err := exec.Command("iptables", "-w", "-t", "nat", "-S", chain).Run(); err != nil {
		t.Fatalf("no chain %s at start: %v", chain, err)
	}
	n.writeConf(t, strings.Replace(good, `"subnet":"`+n.subnet+`"`, `"subnet":"`+strings.TrimSuffix(n.subnet, "0/24")+"7/24"+`"`, 1))
	_, err := d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("broken")})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "has host bits set") {
		t.Fatalf("RunPodSandbox on a broken berthMasquerade config: %v, want FailedPrecondition naming the subnet", err)
	}
	resp, err := d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 0 {
		t.Errorf("pods after the refused run: %v %v", resp, err)
	}
	if err := d.Stop(t); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}
}
