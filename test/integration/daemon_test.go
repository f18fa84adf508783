package integration

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

func TestCrictlVersionAndInfo(t *testing.T) {
	d := framework.StartDaemon(t, "")

	out, err := d.Crictl(t, "version")
	if err != nil {
		t.Fatalf("crictl version: %v\n%s", err, out)
	}
	for _, want := range []string{"RuntimeName:  berth", "RuntimeApiVersion:  v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("crictl version output lacks %q:\n%s", want, out)
		}
	}

	out, err = d.Crictl(t, "info")
	if err != nil {
		t.Fatalf("crictl info: %v\n%s", err, out)
	}
	var info struct {
		Status struct {
			Conditions []struct {
				Type, Reason, Message string
				Status                bool
			}
		}
		Config json.RawMessage
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl info is not JSON: %v\n%s", err, out)
	}
	conds := map[string]bool{}
	for _, c := range info.Status.Conditions {
		conds[c.Type] = c.Status
		if c.Type == "NetworkReady" && c.Reason != "NetworkPluginNotReady" {
			t.Errorf("NetworkReady reason = %q, want NetworkPluginNotReady", c.Reason)
		}
	}
	if !conds["RuntimeReady"] || conds["NetworkReady"] {
		t.Errorf("conditions = %v, want RuntimeReady true and NetworkReady false (no CNI config)", conds)
	}
	var cfg map[string]any
	if err := json.Unmarshal(info.Config, &cfg); err != nil {
		t.Fatalf("info config: %v\n%s", err, out)
	}
	// stateDir is the state dir's one name (critest reads it); the stream
	// address is the one bound, not the configured port 0.
	if cfg["root"] != d.Root || cfg["stateDir"] != d.State {
		t.Errorf("effective config = %v, want root %s and stateDir %s", cfg, d.Root, d.State)
	}
	if _, twice := cfg["state"]; twice {
		t.Errorf("effective config names the state dir twice (state and stateDir): %v", cfg)
	}
	if addr, _ := cfg["streamAddress"].(string); !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Errorf("streamAddress = %q, want the bound 127.0.0.1:<port>", addr)
	} else if c, err := net.DialTimeout("tcp", addr, 10*time.Second); err != nil {
		t.Errorf("streamAddress %s does not accept connections: %v", addr, err)
	} else {
		c.Close()
	}

	// A network config makes the network ready without a restart.
	if err := os.MkdirAll(filepath.Join(d.Dir, "net.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := `{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"loopback"}]}`
	if err := os.WriteFile(filepath.Join(d.Dir, "net.d", "10-t.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := d.Runtime.Status(framework.Context(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Status.Conditions {
		if c.Type == runtimeapi.NetworkReady && !c.Status {
			t.Errorf("NetworkReady still false with a config: %s", c.Message)
		}
	}
}

func TestRuntimeConfigAndSocketMode(t *testing.T) {
	d := framework.StartDaemon(t, "")
	rc, err := d.Runtime.RuntimeConfig(framework.Context(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rc.GetLinux().GetCgroupDriver(); got != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("cgroup driver = %v, want CGROUPFS (the default)", got)
	}
	st, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o660 {
		t.Errorf("socket mode = %o, want 660", mode)
	}
	_, err = d.Runtime.UpdateRuntimeConfig(framework.Context(t), &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.88.0.0/16"}},
	})
	if err != nil {
		t.Errorf("UpdateRuntimeConfig: %v", err)
	}
}

func runBerthd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(framework.BinDir(t), "berthd"), args...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestBadConfig(t *testing.T) {
	cases := []struct {
		name, file string
		flags      []string
		wantInMsg  string
	}{
		{name: "unknown key", file: "listen_addr = \"x\"\n", wantInMsg: "listen_addr"},
		{name: "bad driver in file", file: "cgroup_driver = \"bogus\"\n", wantInMsg: "cgroup_driver"},
		{name: "bad driver flag", flags: []string{"--cgroup-driver", "bogus"}, wantInMsg: "cgroup_driver"},
		{name: "bad stream address", flags: []string{"--stream-address", "nonsense"}, wantInMsg: "stream_address"},
		{name: "tcp listen", flags: []string{"--listen", "tcp://127.0.0.1:1"}, wantInMsg: "listen"},
		{name: "unusable root", flags: []string{"--root", "/proc/version/x"}, wantInMsg: "root"},
		{name: "not toml", file: "this is = = not toml", wantInMsg: "config.toml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := framework.NewDirs(t)
			if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := runBerthd(t, append(framework.Args(dir), tc.flags...)...)
			if code != 2 {
				t.Errorf("exit status = %d, want 2; output:\n%s", code, out)
			}
			if !strings.Contains(out, tc.wantInMsg) {
				t.Errorf("error does not name %q:\n%s", tc.wantInMsg, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "berth.sock")); !os.IsNotExist(err) {
				t.Errorf("socket left behind after a config error")
			}
		})
	}
	t.Run("missing explicit config file", func(t *testing.T) {
		dir := framework.NewDirs(t)
		out, code := runBerthd(t, append(framework.Args(dir), "--config", filepath.Join(dir, "nope.toml"))...)
		if code != 2 || !strings.Contains(out, "nope.toml") {
			t.Errorf("exit %d, output %s; want 2 naming the file", code, out)
		}
	})
}

// A berthd whose berth-shim is missing or not executable could run no pod:
// it exits 1 naming the path it looked at, and serves nothing.
func TestMissingShimRefused(t *testing.T) {
	bin := t.TempDir()
	data, err := os.ReadFile(filepath.Join(framework.BinDir(t), "berthd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "berthd"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(bin, "berth-shim")
	for _, tc := range []struct {
		name, want string
		setup      func()
	}{
		{"missing", "no such file", func() {}},
		{"not executable", "not an executable", func() {
			if err := os.WriteFile(shim, []byte("#!/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			dir := framework.NewDirs(t)
			if err := os.WriteFile(filepath.Join(dir, "config.toml"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(filepath.Join(bin, "berthd"), framework.Args(dir)...)
			out, err := cmd.CombinedOutput()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != 1 {
				t.Errorf("exit status = %d (%v), want 1; output:\n%s", code, err, out)
			}
			for _, want := range []string{shim, tc.want} {
				if !strings.Contains(string(out), want) {
					t.Errorf("message lacks %q:\n%s", want, out)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "berth.sock")); !os.IsNotExist(err) {
				t.Errorf("berthd without a shim left a socket")
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	if out, code := runBerthd(t, "--version"); code != 0 || !strings.HasPrefix(out, "berthd ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	out, code := runBerthd(t, "--help")
	if code != 0 {
		t.Errorf("--help exit = %d", code)
	}
	for _, f := range []string{"-config", "-listen", "-root", "-state", "-cni-conf-dir", "-cni-bin-dir", "-registry-config-dir", "-stream-address", "-cgroup-driver", "-v"} {
		if !strings.Contains(out, f) {
			t.Errorf("--help lacks %s", f)
		}
	}
}

func TestSecondInstanceAndStaleSocket(t *testing.T) {
	d := framework.StartDaemon(t, "")

	// Same state dir, other socket: refused, and the first keeps serving.
	other := filepath.Join(d.Dir, "other.sock")
	args := append(framework.Args(d.Dir), "--listen", other)
	out, code := runBerthd(t, args...)
	if code == 0 || !strings.Contains(out, "another berthd") {
		t.Errorf("second instance: exit %d, output:\n%s", code, out)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("second instance left its socket")
	}
	if _, err := d.Crictl(t, "version"); err != nil {
		t.Errorf("first instance stopped serving: %v", err)
	}

	// A second daemon on its own dirs runs side by side.
	d2 := framework.StartDaemon(t, "")
	if out, err := d2.Crictl(t, "version"); err != nil {
		t.Errorf("side-by-side daemon: %v\n%s", err, out)
	}

	// kill -9 leaves a stale socket; the next start replaces it.
	d.Kill()
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("expected a stale socket after SIGKILL: %v", err)
	}
	d3 := framework.StartDaemon(t, d.Dir)
	if out, err := d3.Crictl(t, "version"); err != nil {
		t.Errorf("restart over stale socket: %v\n%s", err, out)
	}

	// SIGTERM shuts down cleanly and removes the socket.
	if err := d3.Stop(t); err != nil {
		t.Errorf("berthd exit after SIGTERM: %v\n%s", err, d3.Logs())
	}
	if _, err := os.Stat(d3.Socket); !os.IsNotExist(err) {
		t.Errorf("socket not removed on SIGTERM")
	}
}

func TestUnimplementedNamesMethod(t *testing.T) {
	d := framework.StartDaemon(t, "")
	_, err := d.Runtime.CheckpointPod(framework.Context(t), &runtimeapi.CheckpointPodRequest{PodSandboxId: "x"})
	if err == nil || !strings.Contains(err.Error(), "CheckpointPod") || !strings.Contains(err.Error(), "Unimplemented") {
		t.Errorf("CheckpointPod error = %v, want Unimplemented naming it", err)
	}
}

func TestGracefulShutdownWaitsForInflight(t *testing.T) {
	d := framework.StartDaemon(t, "")
	// A stream RPC held open must not block shutdown forever, and a unary
	// RPC issued just before SIGTERM still completes.
	ctx := framework.Context(t)
	if _, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := d.Stop(t); err != nil {
		t.Errorf("exit: %v", err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("shutdown took %v", time.Since(start))
	}
}
