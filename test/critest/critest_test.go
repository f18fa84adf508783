package critest

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// TestCritest runs the whole critest suite against a fresh berthd.
//
//	BERTH_CRITEST=full   skips skip.txt only and reports the real count (make critest)
//	BERTH_CRITEST=guard  skips skip.txt and pending.txt: the regression guard of make test
//
// BERTH_CRITEST_BIN is the critest binary (default: critest on PATH, which
// hack/install-deps.sh builds); BERTH_CRITEST_OUT (default _output/critest)
// keeps critest's output, its JSON report, berthd's log and the summary;
// BERTH_CRITEST_ARGS are more critest flags (space-separated);
// BERTH_CRITEST_FOCUS a regexp of the specs to run (--ginkgo.focus, may hold
// spaces). BERTH_CRITEST_CGROUP_DRIVER (cgroupfs or systemd) runs berthd
// with that cgroup driver and fails unless RuntimeConfig reports it; with
// systemd also unless critest's pods were systemd scopes and none a
// cgroupfs dir (a run that silently used cgroupfs cannot pass).
func TestCritest(t *testing.T) {
	mode := os.Getenv("BERTH_CRITEST")
	if mode != "full" && mode != "guard" {
		t.Skip("set BERTH_CRITEST=full (make critest) or guard (make critest-guard)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("critest needs root")
	}
	bin := critestBinary(t)
	skip, err := ReadList("skip.txt")
	if err != nil {
		t.Fatal(err)
	}
	pending, err := ReadList("pending.txt")
	if err != nil {
		t.Fatal(err)
	}
	skipped := skip
	timeout := 50 * time.Minute
	if mode == "guard" {
		skipped = append(append([]Entry{}, skip...), pending...)
		timeout = 30 * time.Minute
	}

	out := os.Getenv("BERTH_CRITEST_OUT")
	if out == "" {
		out = filepath.Join(framework.RepoRoot(), "_output", "critest")
		// the VMs share the checkout: keep their runs apart from the host's
		if v := os.Getenv("BERTH_VM_VARIANT"); v != "" {
			out = filepath.Join(out, "vm-"+v)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(out, "critest-"+mode+".log")
	reportPath := filepath.Join(out, "critest-"+mode+".json")
	os.Remove(reportPath)

	dir := framework.NewDirs(t)
	reg := framework.StartRegistry(t)
	nw := newNetwork(t, dir)
	berthdArgs := []string{"--registry-config-dir", reg.HostsDir, "--cni-bin-dir", "/usr/lib/cni"}
	driver := os.Getenv("BERTH_CRITEST_CGROUP_DRIVER")
	switch driver {
	case "":
	case "cgroupfs", "systemd":
		berthdArgs = append(berthdArgs, "--cgroup-driver", driver)
	default:
		t.Fatalf("BERTH_CRITEST_CGROUP_DRIVER=%q: want cgroupfs or systemd", driver)
	}
	// critest's NRI specs connect their own plugins to berthd's NRI socket.
	nriSocket := enableNRI(t, dir)
	// BERTH_CRITEST_BERTHD_ARGS are more berthd flags.
	d := framework.StartDaemon(t, dir, append(berthdArgs, strings.Fields(os.Getenv("BERTH_CRITEST_BERTHD_ARGS"))...)...)
	t.Cleanup(func() {
		removeEverything(t, d.Endpoint, nw)
		if err := os.WriteFile(filepath.Join(out, "berthd-"+mode+".log"), []byte(d.Logs()), 0o644); err != nil {
			t.Log(err)
		}
	})

	args := []string{
		"--runtime-endpoint=" + d.Endpoint,
		"--image-endpoint=" + d.Endpoint,
		"--ginkgo.no-color",
		"--ginkgo.timeout=" + timeout.String(),
		"--ginkgo.json-report=" + reportPath,
		"--nri-socket=" + nriSocket,
	}
	args = append(args, SkipArgs(skipped)...)
	if f := os.Getenv("BERTH_CRITEST_FOCUS"); f != "" {
		if _, err := regexp.Compile(f); err != nil {
			t.Fatalf("BERTH_CRITEST_FOCUS: %v", err)
		}
		args = append(args, "--ginkgo.focus="+f)
	}
	// e.g. BERTH_CRITEST_ARGS=--ginkgo.focus=Streaming to iterate on a few specs.
	args = append(args, strings.Fields(os.Getenv("BERTH_CRITEST_ARGS"))...)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "$ %s %s\n", bin, strings.Join(args, " "))
	fmt.Printf("critest (%s): %d skip.txt entries, %d pending.txt entries %s; output in %s\n",
		mode, len(skip), len(pending), map[string]string{"full": "run", "guard": "skipped"}[mode], out)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = io.MultiWriter(os.Stdout, logFile)
	cmd.Stderr = cmd.Stdout
	// critest stops on its own at --ginkgo.timeout; this is the backstop.
	cmd.WaitDelay = time.Minute
	var watch *PodCgroupWatch
	if driver != "" {
		checkCgroupDriver(t, d, driver)
		if driver == "systemd" {
			watch = WatchPodCgroups("/sys/fs/cgroup", 500*time.Millisecond, isSystemdScope)
		}
	}
	start := time.Now()
	runErr := cmd.Run()
	took := time.Since(start)
	var driverSummary string
	if watch != nil {
		driverSummary = checkSystemdPods(t, watch)
	}

	report, err := ReadReport(reportPath)
	if err != nil {
		t.Fatalf("critest exited (%v) without a report: %v", runErr, err)
	}
	var sum strings.Builder
	sum.WriteString(report.Summary())
	fmt.Fprintf(&sum, "critest wall time %s (berthd %s)\n", took.Round(time.Second), strings.TrimSpace(version(d.Endpoint)))
	sum.WriteString(driverSummary)
	if mode == "full" {
		if stale := report.Stale(pending); len(stale) > 0 {
			sum.WriteString("pending.txt lines whose specs passed (remove them):\n")
			for _, e := range stale {
				fmt.Fprintf(&sum, "  pending.txt:%d %s\n", e.Line, e.Pattern)
			}
		}
		if un := report.Uncovered(pending); len(un) > 0 {
			sum.WriteString("failed specs pending.txt does not list (regressions, or add these lines with their issue):\n")
			for _, s := range un {
				fmt.Fprintf(&sum, "  %s  # issue ?\n", regexp.QuoteMeta(s.Text))
			}
		}
	}
	fmt.Print(sum.String())
	if err := os.WriteFile(filepath.Join(out, "summary-"+mode+".txt"), []byte(sum.String()), 0o644); err != nil {
		t.Log(err)
	}
	if failures := report.Failures(); len(failures) > 0 {
		t.Errorf("%d critest specs failed (see the summary above and %s)", len(failures), logPath)
	} else if runErr != nil || !report.Succeeded {
		t.Errorf("critest failed (%v) with no failed spec in its report; see %s", runErr, logPath)
	}
}

// checkCgroupDriver fails the test unless berthd reports the driver critest
// is to see: critest puts its pods in /test.slice only when RuntimeConfig
// says systemd.
func checkCgroupDriver(t *testing.T, d *framework.Daemon, driver string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := d.Runtime.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatalf("RuntimeConfig: %v", err)
	}
	want := map[string]runtimeapi.CgroupDriver{"cgroupfs": runtimeapi.CgroupDriver_CGROUPFS, "systemd": runtimeapi.CgroupDriver_SYSTEMD}[driver]
	if got := resp.GetLinux().GetCgroupDriver(); got != want || resp.GetLinux() == nil {
		t.Fatalf("berthd --cgroup-driver %s: RuntimeConfig reports cgroup driver %v", driver, got)
	}
}

// isSystemdScope asks systemd whether it runs the pod's scope as a unit
// whose cgroup is the one seen (a dir merely named .scope is not one).
func isSystemdScope(pc PodCgroup) bool {
	out, err := exec.Command("systemctl", "show", "-P", "ControlGroup", filepath.Base(pc.Path)).Output()
	return err == nil && strings.TrimSpace(string(out)) == pc.Path
}

// checkSystemdPods fails the test unless the pods of the run were systemd
// scopes: some seen, systemd confirmed them, no pod had a cgroupfs dir.
func checkSystemdPods(t *testing.T, w *PodCgroupWatch) string {
	seen, confirmed := w.Stop()
	var scopes, dirs []string
	for _, pc := range seen {
		if pc.Scope {
			scopes = append(scopes, pc.Path)
		} else {
			dirs = append(dirs, pc.Path)
		}
	}
	if len(dirs) > 0 {
		t.Errorf("systemd cgroup driver: %d pods had cgroupfs dirs, e.g. %s", len(dirs), dirs[0])
	}
	if len(scopes) == 0 || confirmed == 0 {
		t.Errorf("systemd cgroup driver: %d pod scopes seen, %d confirmed as units by systemd; want some", len(scopes), confirmed)
	}
	s := fmt.Sprintf("cgroup driver systemd: %d pod scopes seen (%d confirmed by systemd), %d cgroupfs pod dirs\n", len(scopes), confirmed, len(dirs))
	if len(scopes) > 0 {
		s += "  e.g. " + scopes[0] + "\n"
	}
	return s
}

func critestBinary(t *testing.T) string {
	if b := os.Getenv("BERTH_CRITEST_BIN"); b != "" {
		return b
	}
	b, err := exec.LookPath("critest")
	if err != nil {
		t.Fatalf("critest not found (make deps installs it): %v", err)
	}
	return b
}

func version(endpoint string) string {
	out, _ := framework.Crictl(endpoint, "version")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "RuntimeVersion:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "RuntimeVersion:"))
		}
	}
	return "?"
}

// escapeBridge is what critest's NET_ADMIN specs create inside a pod.
const escapeBridge = "foobar"

// network is the run's own CNI network: a bridge and a /24 named after the
// run's temp dir, so it never meets another test's network on this node.
type network struct {
	dir     string
	bridge  string
	subnet  string
	ipamDir string
}

func newNetwork(t *testing.T, dir string) *network {
	t.Helper()
	h := fnv.New32a()
	h.Write([]byte(dir))
	v := h.Sum32()
	n := &network{
		dir:    dir,
		bridge: fmt.Sprintf("bc%08x", v),
		// 10.150-198.x.0/24: sandbox tests use 10.200-249, the bench 10.199.
		subnet:  fmt.Sprintf("10.%d.%d.0/24", 150+v%49, (v/49)%256),
		ipamDir: filepath.Join(dir, "ipam"),
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[`+
		`{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,"hairpinMode":true,"ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}},`+
		`{"type":"portmap","capabilities":{"portMappings":true}},`+
		`{"type":"loopback"}]}`, n.bridge, n.bridge, n.subnet, n.ipamDir)
	if err := os.MkdirAll(filepath.Join(dir, "net.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "net.d", "10-critest.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// critest's capability specs run "brctl addbr foobar" in containers
	// that must be in their pod's network namespace: the bridge showing up
	// in the node's means a container or an exec escaped it.
	_, err := net.InterfaceByName(escapeBridge)
	hadEscapeBridge := err == nil
	// Runs after berthd stopped: what is left is a leak; remove it anyway so
	// it cannot spill into the next test.
	t.Cleanup(func() {
		for _, l := range n.leftovers() {
			t.Errorf("left behind: %s", l)
		}
		if _, err := net.InterfaceByName(escapeBridge); err == nil && !hadEscapeBridge {
			t.Errorf("bridge %q appeared in the node's network namespace: a critest container or exec ran outside its pod's netns", escapeBridge)
			_ = exec.Command("ip", "link", "del", escapeBridge).Run()
		}
		for _, pid := range processesMentioning(dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, mp := range mountsBelow(dir) {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
		_ = exec.Command("ip", "link", "del", n.bridge).Run()
	})
	return n
}

func (n *network) leftovers() []string {
	var left []string
	if pids := processesMentioning(n.dir); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes %v", pids))
	}
	if mps := mountsBelow(n.dir); len(mps) > 0 {
		left = append(left, fmt.Sprintf("mounts %v", mps))
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", n.bridge).CombinedOutput(); strings.Contains(string(out), "veth") {
		left = append(left, "veths on "+n.bridge+": "+string(out))
	}
	if out, _ := exec.Command("iptables-save").Output(); strings.Contains(string(out), n.bridge) {
		left = append(left, "iptables rules of network "+n.bridge)
	}
	if entries, _ := os.ReadDir(filepath.Join(n.ipamDir, n.bridge)); len(entries) > 0 {
		var ips []string
		for _, e := range entries {
			if strings.Count(e.Name(), ".") == 3 {
				ips = append(ips, e.Name())
			}
		}
		if len(ips) > 0 {
			left = append(left, fmt.Sprintf("IP allocations %v", ips))
		}
	}
	return left
}

// removeEverything removes the pods and containers critest left (a failed
// spec may skip its own cleanup), stops berthd, and checks the pods'
// cgroups went with them.
func removeEverything(t *testing.T, endpoint string, n *network) {
	ids, _ := framework.Crictl(endpoint, "pods", "-q")
	if out, err := framework.Crictl(endpoint, "rmp", "-fa"); err != nil {
		t.Errorf("crictl rmp -fa: %v\n%s", err, out)
	}
	for _, what := range [][]string{{"pods", "-q"}, {"ps", "-aq"}} {
		out, err := framework.Crictl(endpoint, what...)
		switch {
		case err != nil:
			t.Logf("crictl %s: %v", what[0], err)
		case strings.TrimSpace(out) != "":
			t.Errorf("crictl %s after crictl rmp -fa: %s", what[0], out)
		}
	}
	for _, id := range strings.Fields(ids) {
		cgs, _ := filepath.Glob("/sys/fs/cgroup/*/berth/berth-" + id)
		for _, cg := range cgs {
			t.Errorf("pod cgroup %s left after its pod was removed", cg)
			_ = syscall.Rmdir(cg)
		}
	}
	// cgroup v2, either driver: the pods' cgroups or scopes are gone too
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.TrimSpace(ids) != "" {
		for _, pc := range ScanPodCgroups("/sys/fs/cgroup") {
			if strings.Contains(ids, pc.PodID) {
				t.Errorf("pod cgroup %s left after its pod was removed", pc.Path)
			}
		}
	}
}

// processesMentioning are the processes whose command line contains s.
func processesMentioning(s string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(b), s) {
			out = append(out, pid)
		}
	}
	return out
}

// mountsBelow are the mount points under dir, deepest first.
func mountsBelow(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append([]string{fields[4]}, out...)
		}
	}
	return out
}

// enableNRI writes the daemon's config file with NRI enabled on a socket
// (and plugin dirs) of dir's own, and returns the socket's path. critest's
// synchronization specs hold a plugin's Synchronize open for 2 seconds,
// as long as the default plugin_request_timeout, after which a plugin is
// dropped: the runner gives plugins 20 seconds (a bound on a hang under
// load, as everywhere in the tests).
func enableNRI(t *testing.T, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "nri.sock")
	cfg := fmt.Sprintf("[nri]\nenable = true\nplugin_request_timeout = \"20s\"\nsocket_path = %q\nplugin_path = %q\nplugin_config_path = %q\n",
		sock, filepath.Join(dir, "nri-plugins"), filepath.Join(dir, "nri-conf.d"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return sock
}
