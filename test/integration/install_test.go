package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/test/framework"
)

func runInstall(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(framework.RepoRoot(), "hack/install/install.sh")}, args...)...)
	cmd.Env = append(append(os.Environ(), "BIN="+framework.BinDir(t)), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// make install into a DESTDIR: the binaries and unit under the prefix, the
// default config and CNI network only where there are none, and the unit
// passing systemd-analyze verify.
func TestInstallDestdir(t *testing.T) {
	dest := t.TempDir()
	env := []string{"DESTDIR=" + dest, "PREFIX=/usr/local"}
	runInstall(t, env)

	for _, f := range []string{"usr/local/bin/berthd", "usr/local/bin/berth-shim", "usr/local/bin/berth-mon"} {
		st, err := os.Stat(filepath.Join(dest, f))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, mode %v; want an executable", f, err, st)
		}
	}
	unit := readFile(t, filepath.Join(dest, "usr/local/lib/systemd/system/berth.service"))
	for _, want := range []string{"ExecStart=/usr/local/bin/berthd\n", "Type=notify\n", "KillMode=process\n", "Delegate=yes\n", "TasksMax=infinity\n", "Restart=on-failure\n", "OOMScoreAdjust=-999\n", "LimitNOFILE="} {
		if !strings.Contains(unit, want) {
			t.Errorf("berth.service lacks %q:\n%s", want, unit)
		}
	}
	if strings.Contains(unit, "@") {
		t.Errorf("berth.service has a placeholder left:\n%s", unit)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify wants ExecStart's program where it says: point it at the staged one
		dir := t.TempDir()
		staged := strings.ReplaceAll(unit, "=/usr/local/bin/", "="+dest+"/usr/local/bin/")
		if err := os.WriteFile(filepath.Join(dir, "berth.service"), []byte(staged), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", filepath.Join(dir, "berth.service")).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify berth.service: %v\n%s", err, out)
		}
	}

	conf := filepath.Join(dest, "etc/berth/config.toml")
	out, err := exec.Command(filepath.Join(dest, "usr/local/bin/berthd"), "config", "check", "--config", conf).CombinedOutput()
	if err != nil {
		t.Errorf("the installed config does not check: %v\n%s", err, out)
	}
	def, err := exec.Command(filepath.Join(framework.BinDir(t), "berthd"), "config", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, conf) != string(def) {
		t.Errorf("installed config.toml is not berthd config default")
	}
	cni := filepath.Join(dest, "etc/cni/net.d/99-berth.conflist")
	if !strings.Contains(readFile(t, cni), `"bridge": "berth0"`) {
		t.Errorf("default CNI network is not berth0's bridge:\n%s", readFile(t, cni))
	}
	// Its NAT comes with it: berthd's masquerade, not the plugin's per pod.
	if c := readFile(t, cni); !strings.Contains(c, `"berthMasquerade": true`) || !strings.Contains(c, `"ipMasq": false`) {
		t.Errorf("default CNI network without berthMasquerade:\n%s", c)
	}

	// Again over an edited config, with another network's config and no
	// berth one: both stay as they are.
	if err := os.WriteFile(conf, []byte("cgroup_driver = \"systemd\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cni); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dest, "etc/cni/net.d/10-other.conflist")
	if err := os.WriteFile(other, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	runInstall(t, env)
	if got := readFile(t, conf); got != "cgroup_driver = \"systemd\"\n" {
		t.Errorf("make install replaced an existing config.toml:\n%s", got)
	}
	if _, err := os.Stat(cni); !os.IsNotExist(err) {
		t.Errorf("make install wrote %s beside another network's config (err %v)", cni, err)
	}
}

// make deb: a package of the binaries, unit, node-config and maintainer
// scripts, depending on what berth needs at run time.
func TestDebPackage(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(framework.RepoRoot(), "hack/install/build-deb.sh"))
	cmd.Env = append(os.Environ(), "BIN="+framework.BinDir(t), "DEB_OUT="+out, "DEB_VERSION=1.2.3")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b))
	field := func(name string) string {
		v, err := exec.Command("dpkg-deb", "-f", deb, name).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s: %v", name, err)
		}
		return strings.TrimSpace(string(v))
	}
	if v := field("Version"); v != "1.2.3" {
		t.Errorf("Version = %q", v)
	}
	depends := field("Depends")
	for _, want := range []string{"containernetworking-plugins", "iptables", "libseccomp2", "libc6 (>= "} {
		if !strings.Contains(depends, want) {
			t.Errorf("Depends %q lacks %s", depends, want)
		}
	}
	for _, optional := range []string{"criu", "qemu"} {
		if strings.Contains(depends, optional) {
			t.Errorf("Depends %q names %s, which is optional", depends, optional)
		}
		if !strings.Contains(field("Suggests")+field("Recommends"), optional) {
			t.Errorf("%s is neither suggested nor recommended", optional)
		}
	}
	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/berthd", "./usr/bin/berth-shim", "./usr/bin/berth-mon", "./lib/systemd/system/berth.service", "./usr/lib/berth/node-config", "./usr/share/berth/99-berth.conflist"} {
		if !strings.Contains(string(list), " "+want+"\n") {
			t.Errorf("package lacks %s:\n%s", want, list)
		}
	}
	if strings.Contains(string(list), "./etc/") || strings.Contains(string(list), "./var/") {
		t.Errorf("package ships files in /etc or /var (the postinst writes the config):\n%s", list)
	}
	ctrl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if out, err := exec.Command("sh", "-n", filepath.Join(ctrl, s)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
	// purge never takes the pods' data unless asked
	if postrm := readFile(t, filepath.Join(ctrl, "postrm")); !strings.Contains(postrm, `"${BERTH_PURGE_DATA:-}" = yes`) {
		t.Errorf("postrm does not guard /var/lib/berth behind BERTH_PURGE_DATA")
	}
}
