package vm

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/test/framework"
	"github.com/berth-dev/berth/test/framework/testimages"
)

const serviceEndpoint = "unix:///run/berth/berth.sock"

// TestInstalledService installs berth's Debian package (make deb; BERTH_DEB,
// which hack/vm/test.sh builds) on the systemd guest as on a node, runs it
// as berth.service and a pod with crictl, and proves that restarting,
// stopping, SIGKILLing and upgrading the service keeps the pod: the same
// container process runs on, its log grows, and berthd comes back and finds
// the pod. Then the real kubelet runs a static pod on the service
// (kubeletOnService), and the package is purged, which keeps /var/lib/berth.
func TestInstalledService(t *testing.T) {
	if variant(t) != "systemd" {
		t.Skip("systemd variant only")
	}
	deb := os.Getenv("BERTH_DEB")
	if deb == "" {
		t.Fatal("BERTH_DEB (berth's .deb) is not set: run through hack/vm/test.sh, which builds it")
	}
	hadCNIConfig := cniConfigs("/etc/cni/net.d") > 0
	n := &node{t: t}
	t.Cleanup(n.cleanup)

	// Install: the config written, the CNI network where there was none,
	// the unit installed but not enabled.
	n.dpkg("dpkg", "-i", deb)
	if st := n.dpkg("dpkg-query", "-W", "-f", "${Status} ${Version}", "berth"); !strings.HasPrefix(st, "install ok installed") {
		t.Fatalf("berth not installed: %q", st)
	}
	version := strings.Fields(n.dpkg("dpkg-query", "-W", "-f", "${Version}", "berth"))[0]
	if out, _ := exec.Command("systemctl", "is-enabled", "berth.service").Output(); strings.TrimSpace(string(out)) != "disabled" {
		t.Errorf("berth.service after install is %q, want disabled (enabled by the admin)", out)
	}
	if conf, def := strings.TrimSpace(readString(t, "/etc/berth/config.toml")), n.run("/usr/bin/berthd", "config", "default"); conf != def {
		t.Errorf("/etc/berth/config.toml is not berthd config default")
	}
	if !hadCNIConfig && cniConfigs("/etc/cni/net.d") != 1 {
		t.Errorf("no default CNI network written to the empty /etc/cni/net.d")
	}
	// The node's choices: the systemd cgroup driver, and the test images'
	// registry as the mirror of every upstream the fixtures name.
	conf := strings.Replace(readString(t, "/etc/berth/config.toml"), `cgroup_driver = "cgroupfs"`, `cgroup_driver = "systemd"`, 1)
	writeString(t, "/etc/berth/config.toml", conf)
	n.run("/usr/bin/berthd", "config", "check")
	reg := framework.StartRegistry(t)
	if err := reg.WriteHosts("/etc/berth/certs.d"); err != nil {
		t.Fatal(err)
	}

	// Type=notify: systemctl returns once berthd said READY=1, and by then
	// the socket answers.
	n.run("systemctl", "enable", "--now", "berth.service")
	if out, err := framework.Crictl(serviceEndpoint, "version"); err != nil {
		t.Fatalf("crictl version right after systemctl start: %v\n%s", err, out)
	}
	main := n.mainPID()
	if adj := strings.TrimSpace(readString(t, fmt.Sprintf("/proc/%d/oom_score_adj", main))); adj != "-999" {
		t.Errorf("berthd's oom_score_adj = %s, want -999 (OOMScoreAdjust)", adj)
	}
	if limits := readString(t, fmt.Sprintf("/proc/%d/limits", main)); !regexp.MustCompile(`Max open files +1048576 +1048576`).MatchString(limits) {
		t.Errorf("berthd's open files limit is not LimitNOFILE's:\n%s", limits)
	}

	p := n.runPod()
	p.check("started")

	n.run("systemctl", "restart", "berth.service")
	p.check("systemctl restart")

	n.run("systemctl", "stop", "berth.service")
	if out, _ := exec.Command("systemctl", "is-active", "berth.service").Output(); strings.TrimSpace(string(out)) != "inactive" {
		t.Errorf("after systemctl stop berth is %q", out)
	}
	p.alive("berth stopped")
	n.run("systemctl", "start", "berth.service")
	p.check("systemctl stop, start")

	before := n.mainPID()
	restarts := n.show("NRestarts")
	n.run("systemctl", "kill", "-s", "KILL", "berth.service")
	n.waitRestarted(before)
	if after := n.show("NRestarts"); after == restarts {
		t.Errorf("NRestarts still %s after SIGKILL: Restart=on-failure did not restart it", after)
	}
	p.check("systemctl kill -s KILL")

	// An upgrade over the running node: the same package at a higher
	// version; its postinst restarts berthd on the new binary.
	before = n.mainPID()
	newer := n.repack(deb, version+"+vmupgrade1")
	n.dpkg("dpkg", "-i", newer)
	if v := n.dpkg("dpkg-query", "-W", "-f", "${Version}", "berth"); v != version+"+vmupgrade1" {
		t.Errorf("version after the upgrade = %q", v)
	}
	n.waitRestarted(before)
	if !strings.Contains(readString(t, "/etc/berth/config.toml"), `cgroup_driver = "systemd"`) {
		t.Errorf("the upgrade replaced the edited /etc/berth/config.toml")
	}
	p.check("package upgrade")

	// The real kubelet on the installed service, on a node without the
	// test's pod (the kubelet stops every pod it does not know).
	n.crictl("rmp", "-f", p.pod)
	t.Run("kubelet", kubeletOnService)

	// Purge: binaries, unit and config go, the pods' data stays.
	n.dpkg("dpkg", "--purge", "berth")
	for _, f := range []string{"/usr/bin/berthd", "/usr/bin/berth-shim", "/usr/bin/berth-mon", "/lib/systemd/system/berth.service", "/etc/berth/config.toml"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left after purge (err %v)", f, err)
		}
	}
	if _, err := os.Stat("/var/lib/berth/berth.db"); err != nil {
		t.Errorf("purge without BERTH_PURGE_DATA removed the pods' data: %v", err)
	}
}

// node drives the guest: commands, dpkg, the service.
type node struct {
	t        *testing.T
	tmp      string
	podsMade []string
}

func (n *node) run(name string, args ...string) string {
	n.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, journal())
	}
	return strings.TrimSpace(string(out))
}

// dpkg runs dpkg on the guest's own database: test.sh shares the host's
// /var/lib/dpkg over it (the test images' cache key), so dpkg runs in a
// mount namespace of its own without that share.
func (n *node) dpkg(prog string, args ...string) string {
	n.t.Helper()
	return n.run("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c",
		`umount /var/lib/dpkg 2>/dev/null; exec "$0" "$@"`, prog}, args...)...)
}

// repack is deb with another version, built with the guest's dpkg-deb.
func (n *node) repack(deb, version string) string {
	n.t.Helper()
	dir := filepath.Join(n.dir(), "repack")
	n.run("dpkg-deb", "-R", deb, dir)
	control := filepath.Join(dir, "DEBIAN/control")
	writeString(n.t, control, regexp.MustCompile(`(?m)^Version: .*$`).ReplaceAllString(readString(n.t, control), "Version: "+version))
	out := filepath.Join(n.dir(), "berth-upgrade.deb")
	n.run("dpkg-deb", "--root-owner-group", "-Znone", "-b", dir, out) // no compression: seconds under emulation
	return out
}

func (n *node) dir() string {
	if n.tmp == "" {
		n.tmp = n.t.TempDir()
	}
	return n.tmp
}

func (n *node) show(prop string) string {
	return n.run("systemctl", "show", "-p", prop, "--value", "berth.service")
}

func (n *node) mainPID() int {
	n.t.Helper()
	pid, _ := strconv.Atoi(n.show("MainPID"))
	if pid <= 0 {
		n.t.Fatalf("berth.service has no main PID (%s)%s", n.show("ActiveState"), journal())
	}
	return pid
}

// waitRestarted waits for berth.service to be active under a main PID
// other than before's.
func (n *node) waitRestarted(before int) {
	n.t.Helper()
	// a generous bound on a hang: berthd starts slowly under emulation
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pid, _ := strconv.Atoi(n.show("MainPID"))
		if n.show("ActiveState") == "active" && pid > 0 && pid != before {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("berth.service not active again under a new PID (state %s, PID %d, was %d)%s", n.show("ActiveState"), pid, before, journal())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (n *node) crictl(args ...string) string {
	n.t.Helper()
	out, err := framework.Crictl(serviceEndpoint, args...)
	if err != nil {
		n.t.Fatalf("crictl %s: %v\n%s%s", strings.Join(args, " "), err, out, journal())
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// pod is the test's pod: one container printing a line every half second.
type pod struct {
	n             *node
	pod, ctr, log string
	ctrPid        int
	shimPid       int
	logSize       int64
}

func (n *node) runPod() *pod {
	n.t.Helper()
	dir := n.dir()
	logs := filepath.Join(dir, "logs")
	podCfg := map[string]any{
		"metadata":      map[string]any{"name": "installed", "namespace": "vm", "uid": "installed-service-1"},
		"log_directory": logs,
		"linux":         map[string]any{},
	}
	ctrCfg := map[string]any{
		"metadata": map[string]any{"name": "ticker"},
		"image":    map[string]any{"image": testimages.BusyboxRef},
		"command":  []string{"sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.5; done"},
		"log_path": "ticker.log",
		"linux":    map[string]any{},
	}
	podFile, ctrFile := filepath.Join(dir, "pod.json"), filepath.Join(dir, "ctr.json")
	for f, v := range map[string]any{podFile: podCfg, ctrFile: ctrCfg} {
		b, _ := json.Marshal(v)
		writeString(n.t, f, string(b))
	}
	n.crictl("pull", testimages.BusyboxRef)
	p := &pod{n: n, log: filepath.Join(logs, "ticker.log")}
	p.pod = n.crictl("runp", podFile)
	n.podsMade = append(n.podsMade, p.pod)
	p.ctr = n.crictl("create", p.pod, ctrFile, podFile)
	n.crictl("start", p.ctr)
	p.shimPid = p.inspectPid("inspectp", p.pod)
	p.ctrPid = p.inspectPid("inspect", p.ctr)
	return p
}

func (p *pod) inspectPid(cmd, id string) int {
	p.n.t.Helper()
	out, err := framework.Crictl(serviceEndpoint, cmd, id)
	if err != nil {
		p.n.t.Fatalf("crictl %s: %v\n%s", cmd, err, out)
	}
	var v struct {
		Status struct{ State string }
		Info   struct{ Pid int }
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Info.Pid <= 0 {
		p.n.t.Fatalf("crictl %s %s: no pid (%v):\n%s", cmd, id, err, out)
	}
	want := map[string]string{"inspectp": "SANDBOX_READY", "inspect": "CONTAINER_RUNNING"}[cmd]
	if v.Status.State != want {
		p.n.t.Errorf("crictl %s: state %s, want %s", cmd, v.Status.State, want)
	}
	return v.Info.Pid
}

// alive: the same shim and container processes run, and the log grows.
func (p *pod) alive(stage string) {
	t := p.n.t
	t.Helper()
	for what, pid := range map[string]int{"shim": p.shimPid, "container": p.ctrPid} {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			t.Fatalf("%s: the pod's %s (PID %d) is gone%s", stage, what, pid, journal())
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := os.Stat(p.log)
		if err == nil && st.Size() > p.logSize {
			p.logSize = st.Size()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the container's log %s stopped growing (size %d, err %v)", stage, p.log, p.logSize, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// check: berth.service is active, berthd found the pod ready and the
// container running under the same PIDs, the log grows, and the unit's
// cgroup holds berthd alone (no shim or container a stop would take).
func (p *pod) check(stage string) {
	t := p.n.t
	t.Helper()
	if st := p.n.show("ActiveState"); st != "active" {
		t.Fatalf("%s: berth.service is %s%s", stage, st, journal())
	}
	if got := p.inspectPid("inspectp", p.pod); got != p.shimPid {
		t.Errorf("%s: pod's shim PID %d, was %d", stage, got, p.shimPid)
	}
	if got := p.inspectPid("inspect", p.ctr); got != p.ctrPid {
		t.Errorf("%s: container PID %d, was %d", stage, got, p.ctrPid)
	}
	p.alive(stage)
	cg := "/sys/fs/cgroup" + p.n.show("ControlGroup") + "/cgroup.procs"
	procs := strings.Fields(readString(t, cg))
	if main := strconv.Itoa(p.n.mainPID()); len(procs) != 1 || procs[0] != main {
		t.Errorf("%s: berth.service's cgroup holds %v, want berthd (%s) alone", stage, procs, main)
	}
	t.Logf("%s: pod %.12s and container %.12s (PID %d) kept, log %d bytes", stage, p.pod, p.ctr, p.ctrPid, p.logSize)
}

// cleanup removes what the test made when it failed half-way: its pod,
// the package (purged; the service stops), the bridge of the default
// network and berthd's dirs. The VM is thrown away after the run, but later
// tests of this boot must find the node as it was.
func (n *node) cleanup() {
	for _, id := range n.podsMade {
		_, _ = framework.Crictl(serviceEndpoint, "rmp", "-f", id)
	}
	_ = exec.Command("systemctl", "stop", "berth.service").Run()
	_ = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`umount /var/lib/dpkg 2>/dev/null; dpkg --purge berth >/dev/null 2>&1`).Run()
	_ = exec.Command("ip", "link", "del", "berth0").Run()
	_ = os.RemoveAll("/etc/berth/certs.d")
	_ = os.Remove("/etc/berth")
	if !mountedBelow("/var/lib/berth/", "/run/berth/") {
		_ = os.RemoveAll("/var/lib/berth")
		_ = os.RemoveAll("/run/berth")
	} else {
		n.t.Errorf("mounts left below /var/lib/berth or /run/berth")
	}
}

func mountedBelow(prefixes ...string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		for _, p := range prefixes {
			if len(f) > 4 && strings.HasPrefix(f[4], p) {
				return true
			}
		}
	}
	return false
}

func cniConfigs(dir string) int {
	n := 0
	for _, pat := range []string{"*.conf", "*.conflist", "*.json"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		n += len(m)
	}
	return n
}

func journal() string {
	out, _ := exec.Command("journalctl", "-u", "berth.service", "--no-pager", "-n", "40").CombinedOutput()
	return "\nberth.service's journal:\n" + string(out)
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeString(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
