package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// podNet is a test's own CNI setup: a bridge, a subnet, an IPAM data dir,
// a host port and a cgroup parent, all named after the test's temp dir so
// tests running side by side (and other helpers' tests) never collide.
type podNet struct {
	dir          string
	bridge       string
	subnet       string // a /24
	gateway      string
	hostPort     int32
	ipamDir      string
	cgroupParent string
	binDir       string // --cni-bin-dir
}

func newPodNet(t *testing.T, dir string) *podNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	h := fnv.New32a()
	h.Write([]byte(dir))
	v := h.Sum32()
	n := &podNet{
		dir:          dir,
		bridge:       fmt.Sprintf("bt%08x", v),
		subnet:       fmt.Sprintf("10.%d.%d.0/24", 200+v%50, (v/50)%256),
		gateway:      fmt.Sprintf("10.%d.%d.1", 200+v%50, (v/50)%256),
		hostPort:     freePort(t),
		ipamDir:      filepath.Join(dir, "ipam"),
		cgroupParent: "/berth-test-" + filepath.Base(dir),
		binDir:       "/usr/lib/cni",
	}
	t.Cleanup(func() { n.checkClean(t) })
	return n
}

// conflist is a bridge + host-local + portmap + loopback network, with
// extra plugins appended.
func (n *podNet) conflist(extra ...string) string {
	plugins := []string{
		fmt.Sprintf(`{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}}`, n.bridge, n.subnet, n.ipamDir),
		`{"type":"portmap","capabilities":{"portMappings":true}}`,
		`{"type":"loopback"}`,
	}
	plugins = append(plugins, extra...)
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, n.bridge, strings.Join(plugins, ","))
}

func (n *podNet) writeConf(t *testing.T, conf string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(n.dir, "net.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "net.d", "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start writes the default conflist (unless one exists) and starts berthd.
func (n *podNet) start(t *testing.T, extra ...string) *framework.Daemon {
	t.Helper()
	if _, err := os.Stat(filepath.Join(n.dir, "net.d", "10-test.conflist")); os.IsNotExist(err) {
		n.writeConf(t, n.conflist())
	}
	return framework.StartDaemon(t, n.dir, append([]string{"--cni-bin-dir", n.binDir}, extra...)...)
}

// leftovers lists what this test's pods may have left on the node. While
// berthd runs, berthd itself and its private pin dir mount are no leftover.
func (n *podNet) leftovers(running bool) []string {
	var left []string
	if pids := shimsMentioning(n.dir); len(pids) > 0 {
		left = append(left, fmt.Sprintf("shim processes %v", pids))
	}
	var mps []string
	for _, mp := range mountsBelow(n.dir) {
		if !running || mp != filepath.Join(n.dir, "state", "ns") {
			mps = append(mps, mp)
		}
	}
	if len(mps) > 0 {
		left = append(left, fmt.Sprintf("mounts %v", mps))
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", n.bridge).CombinedOutput(); strings.Contains(string(out), "veth") {
		left = append(left, "veths on "+n.bridge+": "+string(out))
	}
	if out, _ := exec.Command("iptables-save").Output(); strings.Contains(string(out), n.bridge) {
		left = append(left, "iptables rules of network "+n.bridge)
	}
	if allocs := ipamAllocations(filepath.Join(n.ipamDir, n.bridge)); len(allocs) > 0 {
		left = append(left, fmt.Sprintf("IP allocations %v", allocs))
	}
	if cgs, _ := filepath.Glob("/sys/fs/cgroup/*" + n.cgroupParent + "/berth-*"); len(cgs) > 0 {
		left = append(left, fmt.Sprintf("cgroups %v", cgs))
	}
	return left
}

// leftoversAfter is leftovers(true), and the pin dirs left in nsDir, once
// the network releases that run after a stop have had a generous while to
// finish (with berthd running). Leftovers starting with one of ignore do
// not count.
func (n *podNet) leftoversAfter(within time.Duration, nsDir string, ignore ...string) []string {
	var left []string
	for end := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for _, l := range n.leftovers(true) {
			if !slices.ContainsFunc(ignore, func(p string) bool { return strings.HasPrefix(l, p) }) {
				left = append(left, l)
			}
		}
		if ents, _ := os.ReadDir(nsDir); len(ents) > 0 {
			left = append(left, fmt.Sprintf("%d pin dirs in %s", len(ents), nsDir))
		}
		if len(left) == 0 || time.Now().After(end) {
			return left
		}
	}
}

// checkClean runs after the daemon stopped: nothing of the test's pods may
// remain. It then removes what the test itself made (bridge, cgroup parent).
func (n *podNet) checkClean(t *testing.T) {
	for _, l := range n.leftovers(false) {
		t.Errorf("left behind: %s", l)
	}
	// Whatever leaked must not leak further into other tests.
	for _, pid := range processesMentioning(n.dir) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	for _, mp := range mountsBelow(n.dir) {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
	_ = exec.Command("ip", "link", "del", n.bridge).Run()
	time.Sleep(100 * time.Millisecond) // killed shims leave their cgroups
	leaked, _ := filepath.Glob("/sys/fs/cgroup/*" + n.cgroupParent + "/berth-*")
	for _, d := range leaked {
		_ = unix.Rmdir(d)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + n.cgroupParent)
	for _, d := range dirs {
		_ = unix.Rmdir(d)
	}
}

// freePort is a TCP port no one listens on now.
func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func ipamAllocations(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// shimsMentioning are the berth-shim processes (or berth-mon, an idle
// shim) whose command line contains s.
func shimsMentioning(s string) []int {
	var out []int
	for _, pid := range processesMentioning(s) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv0, _, _ := strings.Cut(string(b), "\x00")
		if b := filepath.Base(argv0); b == "berth-shim" || b == "berth-mon" {
			out = append(out, pid)
		}
	}
	return out
}

// processesMentioning are the pids whose command line contains s.
func processesMentioning(s string) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func mountsBelow(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// podConfig is a pod of this test: its own cgroup parent, a host port.
func (n *podNet) podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns-" + filepath.Base(n.dir), Uid: "uid-" + name},
		Hostname: name,
		Labels:   map[string]string{"app": name, "test": "sandbox"},
		Annotations: map[string]string{
			"note": "kept",
		},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: n.cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

func runPod(t *testing.T, d *framework.Daemon, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	return resp.PodSandboxId
}

func removePod(t *testing.T, d *framework.Daemon, id string) {
	t.Helper()
	ctx := framework.Context(t)
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
}

// podInfo is PodSandboxStatus(verbose).
type podInfo struct {
	status *runtimeapi.PodSandboxStatus
	Pid    int    `json:"pid"`
	Pause  int    `json:"pausePid"`
	Dir    string `json:"stateDir"`
	NetNS  string `json:"netns"`
	IPCNS  string `json:"ipcns"`
	UTSNS  string `json:"utsns"`
	PIDNS  string `json:"pidns"`
	Shm    string `json:"shmPath"`
	Cgroup string `json:"cgroup"`
}

func inspectPod(t *testing.T, d *framework.Daemon, id string) *podInfo {
	t.Helper()
	resp, err := d.Runtime.PodSandboxStatus(framework.Context(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	var pi podInfo
	if err := json.Unmarshal([]byte(resp.Info["info"]), &pi); err != nil {
		t.Fatalf("status info: %v: %q", err, resp.Info)
	}
	pi.status = resp.Status
	return &pi
}

// inNamespaces runs fn on a thread that joined the given namespace files
// and is thrown away afterwards.
func inNamespaces(t *testing.T, fn func() error, nsFiles ...string) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread carries the pod's namespaces and exits.
		for _, p := range nsFiles {
			f, err := os.Open(p)
			if err != nil {
				errc <- err
				return
			}
			err = unix.Setns(int(f.Fd()), 0)
			f.Close()
			if err != nil {
				errc <- fmt.Errorf("setns %s: %w", p, err)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// listenIn opens a TCP listener inside a network namespace that answers
// each connection with reply.
func listenIn(t *testing.T, netns, addr, reply string) net.Listener {
	t.Helper()
	var lis net.Listener
	err := inNamespaces(t, func() (err error) {
		lis, err = net.Listen("tcp4", addr)
		return err
	}, netns)
	if err != nil {
		t.Fatalf("listen in %s: %v", netns, err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	return lis
}

func readFrom(dial func() (net.Conn, error)) (string, error) {
	c, err := dial()
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	k, err := c.Read(b)
	if err != nil {
		return "", err
	}
	return string(b[:k]), nil
}

func grpcCode(err error) codes.Code { return status.Code(err) }

func TestPodSandboxCrictlLifecycle(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	d := n.start(t)

	cfg := n.podConfig("crictl-pod")
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5", "timeout:2"}}
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "81", "kernel.shmmni": "2048"}
	b, _ := json.Marshal(cfg)
	podFile := filepath.Join(dir, "pod.json")
	if err := os.WriteFile(podFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := d.Crictl(t, "runp", podFile)
	if err != nil {
		t.Fatalf("crictl runp: %v\n%s\n%s", err, out, d.Logs())
	}
	id := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])

	out, err = d.Crictl(t, "pods", "--label", "app=crictl-pod", "-q")
	if err != nil || !strings.Contains(out, id) {
		t.Errorf("crictl pods --label: %v\n%s", err, out)
	}
	out, err = d.Crictl(t, "inspectp", id)
	if err != nil {
		t.Fatalf("crictl inspectp: %v\n%s", err, out)
	}
	var insp struct {
		Status struct {
			State    string
			Network  struct{ IP string }
			Metadata struct{ Name, Namespace, UID string }
			Labels   map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &insp); err != nil {
		t.Fatalf("inspectp output: %v\n%s", err, out)
	}
	if insp.Status.State != "SANDBOX_READY" || insp.Status.Metadata.Name != "crictl-pod" || insp.Status.Labels["app"] != "crictl-pod" {
		t.Errorf("inspectp = %+v", insp.Status)
	}
	_, subnet, _ := net.ParseCIDR(n.subnet)
	if ip := net.ParseIP(insp.Status.Network.IP); ip == nil || !subnet.Contains(ip) {
		t.Errorf("pod IP %q not in %s", insp.Status.Network.IP, n.subnet)
	}

	pi := inspectPod(t, d, id)
	resolv, _ := os.ReadFile(filepath.Join(pi.Dir, "resolv.conf"))
	for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local", "options ndots:5 timeout:2"} {
		if !strings.Contains(string(resolv), want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
	hosts, _ := os.ReadFile(filepath.Join(pi.Dir, "hosts"))
	if !strings.Contains(string(hosts), insp.Status.Network.IP+"\tcrictl-pod") || !strings.Contains(string(hosts), "127.0.0.1\tlocalhost") {
		t.Errorf("hosts:\n%s", hosts)
	}
	// Inside the pod: hostname, sysctls, eth0 with the pod IP, lo up.
	var hostname, portStart, shmmni string
	var addrs []string
	err = inNamespaces(t, func() error {
		var uts unix.Utsname
		if err := unix.Uname(&uts); err != nil {
			return err
		}
		hostname = unix.ByteSliceToString(uts.Nodename[:])
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		portStart = strings.TrimSpace(string(b))
		if err != nil {
			return err
		}
		b, err = os.ReadFile("/proc/sys/kernel/shmmni")
		shmmni = strings.TrimSpace(string(b))
		if err != nil {
			return err
		}
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			as, _ := i.Addrs()
			for _, a := range as {
				addrs = append(addrs, i.Name+"="+a.String()+"/"+i.Flags.String())
			}
		}
		return err
	}, pi.NetNS, pi.UTSNS, pi.IPCNS)
	if err != nil {
		t.Fatal(err)
	}
	if hostname != "crictl-pod" || portStart != "81" || shmmni != "2048" {
		t.Errorf("in the pod: hostname %q, ip_unprivileged_port_start %q, shmmni %q", hostname, portStart, shmmni)
	}
	joined := strings.Join(addrs, " ")
	if !strings.Contains(joined, "eth0="+insp.Status.Network.IP+"/24") || !strings.Contains(joined, "lo=127.0.0.1/8/up") {
		t.Errorf("pod interfaces: %s", joined)
	}
	// The node's values are untouched.
	if b, _ := os.ReadFile("/proc/sys/kernel/shmmni"); strings.TrimSpace(string(b)) == "2048" {
		t.Errorf("the node's kernel.shmmni changed")
	}
	// The shim is in the pod cgroup, in its own session, not berthd's child
	// after all (checked in the restart test) and /dev/shm is a 64 MiB tmpfs.
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pi.Pid))
	if !strings.Contains(string(cg), n.cgroupParent+"/berth-"+id) {
		t.Errorf("shim cgroups:\n%s", cg)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(pi.Shm, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks*uint64(st.Bsize) != 64<<20 {
		t.Errorf("shm %s: %v type %x size %d", pi.Shm, err, st.Type, st.Blocks*uint64(st.Bsize))
	}

	if out, err := d.Crictl(t, "stopp", id); err != nil {
		t.Fatalf("crictl stopp: %v\n%s", err, out)
	}
	out, _ = d.Crictl(t, "pods", "--state", "notready", "-q")
	if !strings.Contains(out, id) {
		t.Errorf("stopped pod not listed as NotReady: %s", out)
	}
	if out, err := d.Crictl(t, "stopp", id); err != nil {
		t.Errorf("second stopp: %v\n%s", err, out)
	}
	if shimsMentioning(id) != nil {
		t.Errorf("shim still runs after stop")
	}
	if out, err := d.Crictl(t, "rmp", id); err != nil {
		t.Fatalf("crictl rmp: %v\n%s", err, out)
	}
	if out, _ := d.Crictl(t, "pods", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("pods after rmp: %q", out)
	}
	_, err = d.Runtime.PodSandboxStatus(framework.Context(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if grpcCode(err) != codes.NotFound {
		t.Errorf("status of a removed pod: %v, want NotFound", err)
	}
	if _, err := d.Runtime.RemovePodSandbox(framework.Context(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if left := n.leftoversAfter(30*time.Second, filepath.Join(d.State, "ns")); len(left) > 0 {
		t.Errorf("after rmp, with berthd running: %v", left)
	}
}

func TestPodSandboxNetworking(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	d := n.start(t)

	a := n.podConfig("pod-a")
	bcfg := n.podConfig("pod-b")
	// Bound to the bridge's address only: portmap's rules then never catch
	// other tests' traffic to the node's other addresses.
	bcfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: n.hostPort, HostIp: n.gateway}}
	idA, idB := runPod(t, d, a), runPod(t, d, bcfg)
	defer removePod(t, d, idA)
	defer removePod(t, d, idB)
	pa, pb := inspectPod(t, d, idA), inspectPod(t, d, idB)
	ipB := pb.status.Network.Ip
	if pa.status.Network.Ip == "" || ipB == "" || pa.status.Network.Ip == ipB {
		t.Fatalf("pod IPs %q and %q", pa.status.Network.Ip, ipB)
	}
	listenIn(t, pb.NetNS, "0.0.0.0:8080", "hello from b")

	// Pod A reaches pod B over the bridge.
	var got string
	err := inNamespaces(t, func() (err error) {
		got, err = readFrom(func() (net.Conn, error) { return net.DialTimeout("tcp4", net.JoinHostPort(ipB, "8080"), 5*time.Second) })
		return err
	}, pa.NetNS)
	if err != nil || got != "hello from b" {
		t.Errorf("pod a → pod b: %q, %v", got, err)
	}
	// The node reaches pod B through its host port (the bridge's address is
	// the node's own, so portmap's OUTPUT rule applies).
	got, err = readFrom(func() (net.Conn, error) {
		return net.DialTimeout("tcp4", net.JoinHostPort(n.gateway, strconv.Itoa(int(n.hostPort))), 5*time.Second)
	})
	if err != nil || got != "hello from b" {
		out, _ := exec.Command("iptables-save", "-t", "nat").Output()
		t.Errorf("node → hostPort %d: %q, %v\n%s", n.hostPort, got, err, out)
	}
}

func TestPodSandboxValidationAndNames(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	d := n.start(t)
	ctx := framework.Context(t)

	_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Hostname: "x"}})
	if grpcCode(err) != codes.InvalidArgument {
		t.Errorf("no metadata: %v, want InvalidArgument", err)
	}
	for _, sysctl := range []map[string]string{{"vm.swappiness": "10"}, {"kernel.hostname": "x"}, {"net.ipv4.ip_forward": "1", "fs.file-max": "1"}} {
		cfg := n.podConfig("bad-sysctl")
		cfg.Linux.Sysctls = sysctl
		_, err = d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("sysctls %v: %v, want InvalidArgument", sysctl, err)
		}
	}
	cfg := n.podConfig("hostnet-sysctl")
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
	if _, err = d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg}); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("net sysctl on the host network: %v, want InvalidArgument", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.State, "pods")); len(entries) != 0 {
		t.Errorf("rejected pods left %d pod dirs", len(entries))
	}

	id := runPod(t, d, n.podConfig("same"))
	_, err = d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("same")})
	if grpcCode(err) != codes.AlreadyExists {
		t.Errorf("same metadata twice: %v, want AlreadyExists", err)
	}
	other := n.podConfig("same")
	other.Metadata.Attempt = 1
	id2 := runPod(t, d, other)

	// Filters: id prefix, state, labels.
	list := func(f *runtimeapi.PodSandboxFilter) []string {
		resp, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range resp.Items {
			ids = append(ids, p.Id)
			if p.Annotations["note"] != "kept" || p.CreatedAt == 0 || p.Metadata.GetUid() != "uid-same" {
				t.Errorf("listed pod %+v lacks annotations, created_at or metadata", p)
			}
		}
		return ids
	}
	if ids := list(&runtimeapi.PodSandboxFilter{Id: id[:12]}); len(ids) != 1 || ids[0] != id {
		t.Errorf("filter by id prefix: %v", ids)
	}
	removePod(t, d, id2)
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	if ids := list(&runtimeapi.PodSandboxFilter{State: ready}); len(ids) != 0 {
		t.Errorf("ready pods after stop: %v", ids)
	}
	if ids := list(&runtimeapi.PodSandboxFilter{State: notReady, LabelSelector: map[string]string{"app": "same"}}); len(ids) != 1 {
		t.Errorf("not-ready pods labelled app=same: %v", ids)
	}
	if ids := list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "nope"}}); len(ids) != 0 {
		t.Errorf("label selector matched %v", ids)
	}
	stream, err := d.Runtime.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var streamed int
	for {
		resp, err := stream.Recv()
		if err != nil {
			break
		}
		streamed += len(resp.PodSandboxes)
	}
	if streamed != 1 {
		t.Errorf("StreamPodSandboxes gave %d pods, want 1", streamed)
	}
	// After removal the same metadata may run again.
	removePod(t, d, id)
	removePod(t, d, runPod(t, d, n.podConfig("same")))
	// Stop and remove are idempotent: an unknown pod is no error.
	if _, err = d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "nonexistent"}); err != nil {
		t.Errorf("stop of an unknown pod: %v", err)
	}
	if _, err = d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{}); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("stop without an id: %v, want InvalidArgument", err)
	}
}

func TestPodSandboxSharedPIDAndHostNamespaces(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	d := n.start(t)

	cfg := n.podConfig("shared-pid")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	id := runPod(t, d, cfg)
	pi := inspectPod(t, d, id)
	if pi.Pause == 0 || pi.PIDNS == "" {
		t.Fatalf("no pause process: %+v", pi)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pi.Pause))
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("pause lacks %q", want)
		}
	}
	if !regexpMatch(`NSpid:\s+\d+\s+1\n`, string(status)) {
		t.Errorf("pause is not PID 1 of its namespace:\n%s", status)
	}
	pidLink, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pi.Pause))
	var st unix.Stat_t
	if err := unix.Stat(pi.PIDNS, &st); err != nil || !strings.Contains(pidLink, strconv.FormatUint(st.Ino, 10)) {
		t.Errorf("pid pin %s (ino %d, %v) is not %s", pi.PIDNS, st.Ino, err, pidLink)
	}
	removePod(t, d, id)
	if shimsMentioning(id) != nil || unix.Kill(pi.Pause, 0) == nil {
		t.Errorf("shim or pause still running after removal")
	}

	host := n.podConfig("host-ns")
	host.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE}
	id = runPod(t, d, host)
	pi = inspectPod(t, d, id)
	if pi.NetNS != "" || pi.IPCNS != "" || pi.Pause != 0 || pi.Shm != "/dev/shm" || pi.status.GetNetwork().GetIp() != "" {
		t.Errorf("host namespaces pod: %+v", pi)
	}
	if o := pi.status.GetLinux().GetNamespaces().GetOptions(); o.GetNetwork() != runtimeapi.NamespaceMode_NODE || o.GetPid() != runtimeapi.NamespaceMode_NODE {
		t.Errorf("namespace options reported %v", o)
	}
	removePod(t, d, id)
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// TestPodSandboxFailingPluginLeavesNothing runs a network whose last plugin
// fails after bridge, host-local and portmap did their work.
func TestPodSandboxFailingPluginLeavesNothing(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	n.binDir = filepath.Join(dir, "cni-bin")
	if err := os.MkdirAll(n.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if err := os.Symlink(filepath.Join("/usr/lib/cni", p), filepath.Join(n.binDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	// Fails ADD with a CNI error; DEL succeeds.
	script := `#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
	echo '{"cniVersion":"1.0.0","code":11,"msg":"no luck today","details":"fake failure"}'
	exit 1
fi
exit 0
`
	if err := os.WriteFile(filepath.Join(n.binDir, "failer"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n.writeConf(t, n.conflist(`{"type":"failer"}`))
	d := n.start(t)

	cfg := n.podConfig("doomed")
	cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: n.hostPort, HostIp: n.gateway}}
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	_, err := d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err == nil {
		t.Fatal("RunPodSandbox succeeded with a failing plugin")
	}
	for _, want := range []string{"network", "failer", "no luck today"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	if left := n.leftovers(true); len(left) > 0 {
		t.Errorf("after the failed run: %v\n%s", left, d.Logs())
	}
	for _, sub := range []string{"pods", "ns"} {
		if entries, _ := os.ReadDir(filepath.Join(d.State, sub)); len(entries) != 0 {
			t.Errorf("%s/ has %d entries after the failed run", sub, len(entries))
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(d.Root, "cni", "results")); len(entries) != 0 {
		t.Errorf("CNI cache has %d entries", len(entries))
	}
	resp, err := d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 0 {
		t.Errorf("pods after the failed run: %v %v", resp, err)
	}
	// A retry that works (plugin fixed) is not refused as a duplicate.
	n.writeConf(t, n.conflist())
	removePod(t, d, runPod(t, d, cfg))
}

func TestPodSandboxRestartRecovery(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	d := n.start(t)
	id := runPod(t, d, n.podConfig("survivor"))
	doomed := runPod(t, d, n.podConfig("doomed"))
	before, dp := inspectPod(t, d, id), inspectPod(t, d, doomed)

	d.Kill()
	// kill -9 of berthd stops nothing.
	for _, pid := range []int{before.Pid, dp.Pid} {
		if unix.Kill(pid, 0) != nil {
			t.Fatalf("shim %d died with berthd", pid)
		}
	}
	// A pod whose shim dies while berthd is down is found NotReady.
	_ = unix.Kill(dp.Pid, unix.SIGKILL)
	d = n.start(t)
	after := inspectPod(t, d, id)
	if after.status.State != runtimeapi.PodSandboxState_SANDBOX_READY || after.status.Network.GetIp() != before.status.Network.GetIp() || after.Pid != before.Pid {
		t.Errorf("after restart: state %v ip %q (was %q) shim %d (was %d)", after.status.State, after.status.Network.GetIp(), before.status.Network.GetIp(), after.Pid, before.Pid)
	}
	for _, pid := range processesMentioning(d.Socket) {
		if parentOf(after.Pid) == pid {
			t.Errorf("shim is a child of the new berthd")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for inspectPod(t, d, doomed).status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := inspectPod(t, d, doomed).status.State; st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod without shim: %v, want NotReady", st)
	}
	// The old result is in the cache: stop releases the IP after the restart.
	removePod(t, d, doomed)
	removePod(t, d, id)
}

func parentOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// TestPodSandboxSlowRunRetried: a RunPodSandbox that outlives its caller's
// deadline finishes, and the retry with the same metadata gets that pod.
func TestPodSandboxSlowRunRetried(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	n.binDir = filepath.Join(dir, "cni-bin")
	if err := os.MkdirAll(n.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if err := os.Symlink(filepath.Join("/usr/lib/cni", p), filepath.Join(n.binDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	// A plugin that takes 3 s and passes the previous result on.
	script := `#!/bin/sh
conf=$(cat)
[ "$CNI_COMMAND" = ADD ] && sleep 3
if [ "$CNI_COMMAND" = ADD ]; then
	echo "$conf" | sed -n 's/.*"prevResult":\(.*\),"type":"slow"}$/\1/p'
fi
exit 0
`
	if err := os.WriteFile(filepath.Join(n.binDir, "slow"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n.writeConf(t, n.conflist(`{"type":"slow"}`))
	d := n.start(t)

	cfg := n.podConfig("slow")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	cancel()
	if grpcCode(err) != codes.DeadlineExceeded {
		t.Fatalf("first attempt: %v, want DeadlineExceeded", err)
	}
	start := time.Now()
	resp, err := d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("retry: %v\n%s", err, d.Logs())
	}
	if time.Since(start) > 2800*time.Millisecond {
		t.Errorf("retry took %v: it started over instead of joining the first attempt", time.Since(start))
	}
	list, _ := d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if len(list.GetItems()) != 1 || list.Items[0].Id != resp.PodSandboxId {
		t.Errorf("pods: %v, want only %s", list.GetItems(), resp.PodSandboxId)
	}
	// A later run with the same metadata is a duplicate again.
	_, err = d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if grpcCode(err) != codes.AlreadyExists {
		t.Errorf("third run: %v, want AlreadyExists", err)
	}
	removePod(t, d, resp.PodSandboxId)
}

// slowPluginNet is a podNet whose config ends in a plugin that sleeps
// (seconds) on command (ADD or DEL) and passes the previous result on.
func slowPluginNet(t *testing.T, dir, command string, seconds int) *podNet {
	t.Helper()
	n := newPodNet(t, dir)
	n.binDir = filepath.Join(dir, "cni-bin")
	if err := os.MkdirAll(n.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if err := os.Symlink(filepath.Join("/usr/lib/cni", p), filepath.Join(n.binDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf(`#!/bin/sh
conf=$(cat)
[ "$CNI_COMMAND" = %s ] && sleep %d
if [ "$CNI_COMMAND" = ADD ]; then
	echo "$conf" | sed -n 's/.*"prevResult":\(.*\),"type":"slow"}$/\1/p'
fi
exit 0
`, command, seconds)
	if err := os.WriteFile(filepath.Join(n.binDir, "slow"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n.writeConf(t, n.conflist(`{"type":"slow"}`))
	return n
}

// TestPodSandboxRunWaitsForReleases: a pod range with one address, held by
// a stopped pod whose network release (a slow DEL) is still pending: the
// next pod's ADD fails for want of an address, and RunPodSandbox tries it
// again once the release is done instead of failing the pod.
func TestPodSandboxRunWaitsForReleases(t *testing.T) {
	dir := framework.NewDirs(t)
	n := slowPluginNet(t, dir, "DEL", 3)
	// host-local leaves out the network, the gateway and the broadcast
	// address of a /30: one address for pods.
	n.subnet = strings.Replace(n.subnet, "/24", "/30", 1)
	n.writeConf(t, n.conflist(`{"type":"slow"}`))
	d := n.start(t, "-v", "2")
	ctx := framework.Context(t)

	first := runPod(t, d, n.podConfig("first"))
	ip := inspectPod(t, d, first).status.Network.GetIp()
	if ip == "" {
		t.Fatal("first pod has no IP")
	}
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: first}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	second, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("second")})
	if err != nil {
		t.Fatalf("RunPodSandbox while the only address waits for its release: %v\n%s", err, d.Logs())
	}
	if got := inspectPod(t, d, second.PodSandboxId).status.Network.GetIp(); got != ip {
		t.Errorf("second pod's IP %q, want the released %q", got, ip)
	}
	// With the address taken and nothing pending, a third pod fails and
	// leaves nothing.
	_, err = d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("third")})
	if err == nil || !strings.Contains(err.Error(), "no IP addresses available") {
		t.Errorf("third pod with the range full: %v", err)
	}
	if list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(list.Items) != 2 {
		t.Errorf("pods after the failed run: %v %v, want the two", list.GetItems(), err)
	}
	removePod(t, d, first)
	removePod(t, d, second.PodSandboxId)
}

// TestPodSandboxCrashDuringRun: berthd is killed while a pod is half made
// (namespaces pinned, shim running, IP allocated, no record yet); the next
// start removes all of it.
func TestPodSandboxCrashDuringRun(t *testing.T) {
	dir := framework.NewDirs(t)
	n := slowPluginNet(t, dir, "ADD", 3)
	d := n.start(t)
	go func() {
		_, _ = d.Runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("half")})
	}()
	// Wait until the IP is allocated and the shim runs, then crash.
	deadline := time.Now().Add(10 * time.Second)
	for (len(ipamAllocations(filepath.Join(n.ipamDir, n.bridge))) == 0 || len(shimsMentioning(dir)) == 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(n.leftovers(true)) == 0 {
		t.Fatalf("nothing half-made to crash on:\n%s", d.Logs())
	}
	d.Kill()
	// Make it harder: the shim's socket and the pod's pod.json are gone too,
	// so the shim is found by its command line and the cgroup through it.
	for _, f := range []string{"shim.sock", "pod.json"} {
		matches, _ := filepath.Glob(filepath.Join(dir, "state", "pods", "*", f))
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(3500 * time.Millisecond) // the orphaned plugin finishes
	n.writeConf(t, n.conflist())
	d = n.start(t)
	if left := n.leftovers(true); len(left) > 0 {
		t.Errorf("after restart: %v\n%s", left, d.Logs())
	}
	resp, err := d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 0 {
		t.Errorf("pods after the crash: %v %v", resp, err)
	}
	for _, sub := range []string{"state/pods", "state/ns"} {
		if entries, _ := os.ReadDir(filepath.Join(dir, sub)); len(entries) != 0 {
			t.Errorf("%s has %d entries", sub, len(entries))
		}
	}
}

// TestPodSandboxLostNamespaces is a reboot as berthd sees it: the pins and
// the shim are gone. The pod is NotReady at the next start and its IP is
// released with the cached CNI result.
func TestPodSandboxLostNamespaces(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	d := n.start(t)
	id := runPod(t, d, n.podConfig("rebooted"))
	pi := inspectPod(t, d, id)
	d.Kill()
	_ = unix.Kill(pi.Pid, unix.SIGKILL)
	mps := mountsBelow(filepath.Join(dir, "state"))
	for i := len(mps) - 1; i >= 0; i-- {
		if err := unix.Unmount(mps[i], unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	d = n.start(t)
	if st := inspectPod(t, d, id).status.State; st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod after losing its namespaces: %v", st)
	}
	// Released in the background once berthd is up.
	allocs := ipamAllocations(filepath.Join(n.ipamDir, n.bridge))
	for end := time.Now().Add(30 * time.Second); len(allocs) != 0 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		allocs = ipamAllocations(filepath.Join(n.ipamDir, n.bridge))
	}
	if len(allocs) != 0 {
		t.Errorf("IP still allocated after start-up: %v\n%s", allocs, d.Logs())
	}
	removePod(t, d, id)
}

// TestPodSandboxBandwidth: the kubelet's bandwidth annotations reach the
// bandwidth plugin through its capability.
func TestPodSandboxBandwidth(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	n.writeConf(t, n.conflist(`{"type":"bandwidth","capabilities":{"bandwidth":true}}`))
	d := n.start(t)

	cfg := n.podConfig("limited")
	cfg.Annotations[cniIngressAnnotation] = "2M"
	id := runPod(t, d, cfg)
	qdiscs := func() string {
		out, _ := exec.Command("ip", "-o", "link", "show", "master", n.bridge).Output()
		var all strings.Builder
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			veth, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			q, _ := exec.Command("tc", "qdisc", "show", "dev", veth).Output()
			all.Write(q)
		}
		return all.String()
	}
	if q := qdiscs(); !strings.Contains(q, "tbf") || !strings.Contains(q, "rate 2Mbit") {
		t.Errorf("no 2 Mbit/s tbf on the pod's veth:\n%s", q)
	}
	removePod(t, d, id)

	id = runPod(t, d, n.podConfig("unlimited"))
	if q := qdiscs(); strings.Contains(q, "tbf") {
		t.Errorf("a pod without annotations is limited:\n%s", q)
	}
	removePod(t, d, id)

	bad := n.podConfig("bad")
	bad.Annotations[cniIngressAnnotation] = "fast"
	if _, err := d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: bad}); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("bad bandwidth annotation: %v, want InvalidArgument", err)
	}
}

const cniIngressAnnotation = "kubernetes.io/ingress-bandwidth"

// TestPodSandboxNetworkReadyNeedsAUsableConfig: a config that does not
// parse is no network.
func TestPodSandboxNetworkReadyNeedsAUsableConfig(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	n.writeConf(t, `{"cniVersion":"1.0.0","name":`)
	d := n.start(t)
	ready := func() (bool, string) {
		st, err := d.Runtime.Status(framework.Context(t), &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.Status.Conditions {
			if c.Type == runtimeapi.NetworkReady {
				return c.Status, c.Message
			}
		}
		return false, "no NetworkReady condition"
	}
	if ok, msg := ready(); ok {
		t.Errorf("NetworkReady with a malformed config (%s)", msg)
	}
	_, err := d.Runtime.RunPodSandbox(framework.Context(t), &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("no-net")})
	if err == nil || !strings.Contains(err.Error(), "network") {
		t.Errorf("RunPodSandbox without a usable network: %v", err)
	}
	n.writeConf(t, n.conflist())
	if ok, msg := ready(); !ok {
		t.Errorf("NetworkReady false with a good config: %s", msg)
	}
}

// TestPodSandboxPodCIDR: the pod CIDR of UpdateRuntimeConfig reaches IPAM
// through the ipRanges capability and wins over the config's range.
func TestPodSandboxPodCIDR(t *testing.T) {
	dir := framework.NewDirs(t)
	n := newPodNet(t, dir)
	// The range comes only from the runtime (host-local would otherwise add
	// it before its own and give the pod two addresses).
	conf := n.conflist()
	conf = strings.Replace(conf, `"type":"bridge",`, `"type":"bridge","capabilities":{"ipRanges":true},`, 1)
	conf = strings.Replace(conf, fmt.Sprintf(`"ranges":[[{"subnet":%q}]]`, n.subnet), `"ranges":[]`, 1)
	n.writeConf(t, conf)
	d := n.start(t)
	// Another /24 of the test's own: the third octet moved by 128.
	_, own, _ := net.ParseCIDR(n.subnet)
	cidr := net.IPNet{IP: append(net.IP(nil), own.IP.To4()...), Mask: own.Mask}
	cidr.IP[2] ^= 128
	if _, err := d.Runtime.UpdateRuntimeConfig(framework.Context(t), &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr.String()}},
	}); err != nil {
		t.Fatal(err)
	}
	id := runPod(t, d, n.podConfig("in-cidr"))
	ip := net.ParseIP(inspectPod(t, d, id).status.GetNetwork().GetIp())
	if ip == nil || !cidr.Contains(ip) {
		t.Errorf("pod IP %v not in the pod CIDR %s (config range %s)", ip, cidr.String(), n.subnet)
	}
	removePod(t, d, id)
}
