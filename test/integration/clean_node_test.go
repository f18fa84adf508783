package integration

import (
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// cleanNode runs hack/clean-node.sh (make clean-node) on a test daemon's
// dirs and the test's own bridge, CNI config, IPAM and etc dirs.
func cleanNode(t *testing.T, env []string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(framework.RepoRoot(), "hack", "clean-node.sh"))
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func wantOutput(t *testing.T, step, out string, code, wantCode int, wants ...string) {
	t.Helper()
	t.Logf("%s: exit %d\n%s", step, code, out)
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d; output:\n%s", step, code, wantCode, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", step, w, out)
		}
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestCleanNode: make clean-node refuses while berthd runs (with pods, and
// without), while a stopped berthd's database and shims hold a pod, and
// then removes the state and root dirs, the bridge, the network's iptables
// rules and chains, host-local's allocations and the default CNI config,
// but keeps a CNI config that is not the one setup-default.sh writes.
func TestCleanNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := framework.NewDirs(t)
	h := fnv.New32a()
	h.Write([]byte(dir))
	bridge := fmt.Sprintf("bc%08x", h.Sum32())
	chain := fmt.Sprintf("CNI-bc%08x", h.Sum32())
	confDir, ipamDir, etc := filepath.Join(dir, "net.d"), filepath.Join(dir, "ipam"), filepath.Join(dir, "etc")
	d := framework.StartDaemon(t, dir)
	env := []string{"BERTH_ROOT=" + d.Root, "BERTH_STATE=" + d.State, "BERTH_LISTEN=" + d.Endpoint,
		"BERTH_CNI_CONF_DIR=" + confDir, "BERTH_CNI_BRIDGE=" + bridge, "BERTH_CNI_IPAM_DIR=" + ipamDir, "BERTH_ETC=" + etc,
		"BERTH_CNI_TEMPLATES=" + filepath.Join(dir, "share", "99-berth.conflist")}

	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "clean-node", Namespace: "ns-" + filepath.Base(dir), Uid: "uid-clean-node"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
	id := runPod(t, d, cfg)
	removed := false
	t.Cleanup(func() {
		if !removed {
			removePod(t, framework.StartDaemon(t, dir), id)
		}
	})

	out, code := cleanNode(t, env)
	wantOutput(t, "berthd with a pod", out, code, 1, "with 1 pod(s)", id, "rmp -fa", "nothing was removed")

	// Stopped, its pod lives on: the database and the shim tell.
	if err := d.Stop(t); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}
	out, code = cleanNode(t, env)
	wantOutput(t, "stopped berthd with a pod", out, code, 1, "pods remain", "holds 1 pod(s)", id+" ns-"+filepath.Base(dir)+"/clean-node", "berth-shim processes", "nothing was removed")
	if !exists(filepath.Join(d.Root, "berth.db")) {
		t.Fatalf("a refusal removed the database")
	}

	d = framework.StartDaemon(t, dir)
	removePod(t, d, id)
	removed = true
	out, code = cleanNode(t, env)
	wantOutput(t, "berthd without pods", out, code, 1, "with no pod: stop it")
	if err := d.Stop(t); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}

	// What make run and the CNI plugins leave, for this test's network.
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	comment := fmt.Sprintf("name: %q id: \"t\"", bridge)
	postrouting := []string{"POSTROUTING", "-s", "10.255.255.1/32", "-m", "comment", "--comment", comment, "-j", chain}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", bridge).Run()
		exec.Command("iptables", append([]string{"-w", "-t", "nat", "-D"}, postrouting...)...).Run()
		exec.Command("iptables", "-w", "-t", "nat", "-F", chain).Run()
		exec.Command("iptables", "-w", "-t", "nat", "-X", chain).Run()
	})
	run("ip", "link", "add", "name", bridge, "type", "bridge")
	run("iptables", "-w", "-t", "nat", "-N", chain)
	run("iptables", "-w", "-t", "nat", "-A", chain, "-m", "comment", "--comment", comment, "-j", "RETURN")
	run(append([]string{"iptables", "-w", "-t", "nat", "-I"}, postrouting...)...)
	for _, p := range []string{confDir, filepath.Join(ipamDir, bridge), filepath.Join(etc, "certs.d")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ipamDir, bridge, "10.255.255.1"), []byte("t"), 0o644); err != nil {
		t.Fatal(err)
	}
	printConf := exec.Command("bash", filepath.Join(framework.RepoRoot(), "hack", "setup-default.sh"), "--print-cni")
	printConf.Env = append(os.Environ(), "BERTH_CNI_BRIDGE="+bridge)
	conf, err := printConf.Output()
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(confDir, "10-berth.conflist")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	// make install's default network, a copy of the installed template
	// (whose bridge is berth0, not the test's).
	installed, err := exec.Command("bash", filepath.Join(framework.RepoRoot(), "hack", "setup-default.sh"), "--print-cni").Output()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "share", "99-berth.conflist"), string(installed))
	installedPath := filepath.Join(confDir, "99-berth.conflist")
	writeFile(t, installedPath, string(installed))
	// berthd, started on the default network, makes its masquerade
	// (berthMasquerade) and leaves it when it stops.
	masqChain := "BERTH-MASQ-" + fmt.Sprintf("%x", sha256.Sum256([]byte(bridge)))[:16]
	t.Cleanup(func() { deleteMasquerade(bridge, masqChain) })
	if err := framework.StartDaemon(t, dir).Stop(t); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}
	if err := exec.Command("iptables", "-w", "-t", "nat", "-S", masqChain).Run(); err != nil {
		t.Fatalf("berthd on the default network made no chain %s: %v", masqChain, err)
	}

	out, code = cleanNode(t, env)
	wantOutput(t, "no pod, berthd stopped", out, code, 0, "remove "+d.State, "remove "+d.Root, "remove bridge "+bridge, "removed chain "+chain, "removed chain "+masqChain, "remove "+confPath, "remove "+installedPath, "done")
	for _, p := range []string{d.Root, d.State, confPath, installedPath, filepath.Join(ipamDir, bridge), etc} {
		if exists(p) {
			t.Errorf("%s is left after clean-node", p)
		}
	}
	if exec.Command("ip", "link", "show", bridge).Run() == nil {
		t.Errorf("bridge %s is left after clean-node", bridge)
	}
	if rules, _ := exec.Command("iptables", "-w", "-t", "nat", "-S").Output(); strings.Contains(string(rules), bridge) {
		t.Errorf("iptables rules of %s are left after clean-node:\n%s", bridge, rules)
	}
	if exec.Command("iptables", "-w", "-t", "nat", "-S", masqChain).Run() == nil {
		t.Errorf("chain %s is left after clean-node", masqChain)
	}

	// A config that is not setup-default.sh's stays, and so does another
	// add-on's 99-berth.conflist.
	if err := os.WriteFile(confPath, append(conf, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, installedPath, `{"cniVersion":"1.0.0","name":"addon","plugins":[{"type":"loopback"}]}`)
	out, code = cleanNode(t, env)
	wantOutput(t, "edited config", out, code, 0, "keep "+confPath, "keep "+installedPath)
	if !exists(confPath) || !exists(installedPath) {
		t.Errorf("clean-node removed a CNI config it did not write")
	}
}
