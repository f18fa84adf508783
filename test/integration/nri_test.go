package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// newNRIEnv is a ctrEnv whose berthd serves NRI on a socket of its own,
// with requestTimeout for plugin requests ("" the default), and metrics on
// the address it returns last.
func newNRIEnv(t *testing.T, requestTimeout string) (*ctrEnv, string, string) {
	t.Helper()
	var sock, metrics string
	e := newCtrEnvWith(t, func(dir string) string {
		sock = filepath.Join(dir, "nri.sock")
		metrics = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg := fmt.Sprintf("metrics_address = %q\n[nri]\nenable = true\nsocket_path = %q\nplugin_path = %q\nplugin_config_path = %q\n",
			metrics, sock, filepath.Join(dir, "nri-plugins"), filepath.Join(dir, "nri-conf.d"))
		if requestTimeout != "" {
			cfg += fmt.Sprintf("plugin_request_timeout = %q\n", requestTimeout)
		}
		return cfg
	}, "-v", "2")
	return e, sock, metrics
}

// nriPluginBinary builds test/nriplugin into the test's temp dir (the
// build cache makes it a link).
func nriPluginBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nriplugin")
	cmd := exec.Command("go", "build", "-o", bin, "./test/nriplugin")
	cmd.Dir = framework.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test/nriplugin: %v\n%s", err, out)
	}
	return bin
}

// nriPlugin is a running test/nriplugin and what it printed.
type nriPlugin struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func (p *nriPlugin) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *nriPlugin) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor polls the plugin's output for line, a generous bound on a hang.
func (p *nriPlugin) waitFor(t *testing.T, line string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.output(), line) {
		if time.Now().After(deadline) {
			t.Fatalf("NRI plugin never printed %q; it printed:\n%s", line, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startNRIPlugin connects a test plugin to berthd's NRI socket and waits
// until berthd has synchronized it; it is stopped when the test ends.
func startNRIPlugin(t *testing.T, bin, sock, mountSrc string) *nriPlugin {
	t.Helper()
	p := &nriPlugin{done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "-socket", sock, "-mount-src", mountSrc)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
		t.Logf("NRI plugin output:\n%s", p.output())
	})
	p.waitFor(t, "synchronized")
	return p
}

// nriStatus is Status(verbose)'s nri key.
type nriStatus struct {
	Enabled   bool `json:"enabled"`
	Connected int  `json:"connected"`
	Plugins   []struct {
		Name   string `json:"name"`
		Calls  int    `json:"calls"`
		Errors int    `json:"errors"`
	} `json:"plugins"`
}

func nriInfo(t *testing.T, e *ctrEnv) nriStatus {
	t.Helper()
	resp, err := e.d.Runtime.Status(framework.Context(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var st nriStatus
	if err := json.Unmarshal([]byte(resp.Info["nri"]), &st); err != nil {
		t.Fatalf("Status info nri %q: %v", resp.Info["nri"], err)
	}
	return st
}

func nriCtr(name, mode string) *runtimeapi.ContainerConfig {
	cfg := ctrConfig(name, "sleep", "3600")
	cfg.Annotations = map[string]string{"berth.test/nri": mode}
	return cfg
}

// TestNRIAdjustments: a plugin's adjustment (env, bind mount, device,
// rlimit, OOM score, memory limit) is in the running container, plugins
// hear of its lifecycle, and Status(verbose) lists the plugin.
func TestNRIAdjustments(t *testing.T) {
	e, sock, _ := newNRIEnv(t, "")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("from-the-node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startNRIPlugin(t, nriPluginBinary(t), sock, src)
	podID, podCfg := e.pod(t, "nri")
	id := e.run(t, podID, podCfg, nriCtr("adjusted", "adjust"))

	out := e.execSync(t, id, "sh", "-c", "tr '\\0' '\\n' </proc/1/environ | grep NRI_; cat /nri-mnt/hello; ls -l /dev/nri-null; grep 'open files' /proc/1/limits; cat /proc/1/oom_score_adj; touch /nri-mnt/x 2>&1 || echo read-only")
	got := string(out.Stdout) + string(out.Stderr)
	for _, want := range []string{"NRI_INJECTED=by-berthtest", "from-the-node", "1,   3", "1111", "2222", "321", "read-only"} {
		if !strings.Contains(got, want) {
			t.Errorf("container shows no %q of the NRI adjustment; it shows:\n%s", want, got)
		}
	}
	st, _ := e.status(t, id)
	if lim := st.GetResources().GetLinux().GetMemoryLimitInBytes(); lim != 64<<20 {
		t.Errorf("ContainerStatus memory limit %d, want the plugin's %d", lim, 64<<20)
	}

	info := nriInfo(t, e)
	if !info.Enabled || info.Connected != 1 || len(info.Plugins) != 1 || info.Plugins[0].Name != "50-berthtest" || info.Plugins[0].Calls == 0 {
		t.Errorf("Status(verbose) nri = %+v, want one plugin 50-berthtest connected and called", info)
	}

	ctx := framework.Context(t)
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "event RemoveContainer adjusted")
	var order []string
	for _, l := range strings.Split(p.output(), "\n") {
		if strings.HasPrefix(l, "event ") && strings.HasSuffix(l, " adjusted") {
			order = append(order, strings.Fields(l)[1])
		}
	}
	want := "CreateContainer StartContainer PostStartContainer StopContainer RemoveContainer"
	if strings.Join(order, " ") != want {
		t.Errorf("plugin saw %v, want %s", order, want)
	}

	// The OCI hooks a plugin adds run on the node with the container's
	// state: createRuntime and createContainer (this one in the
	// container's namespaces) before the create returns, poststart after
	// the start, poststop at the removal.
	hookState := func(kind string) map[string]any {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(src, kind+".json"))
		if err != nil {
			t.Errorf("%s hook did not run: %v", kind, err)
			return nil
		}
		var st map[string]any
		if err := json.Unmarshal(data, &st); err != nil {
			t.Errorf("%s hook got %q: %v", kind, data, err)
		}
		return st
	}
	hid := e.create(t, podID, podCfg, nriCtr("hooked", "hooks"))
	if st := hookState("createRuntime"); st != nil && (st["id"] != hid || st["status"] != "created" || st["pid"] == float64(0)) {
		t.Errorf("createRuntime hook state %v, want container %s created with a pid", st, hid)
	}
	if st := hookState("createContainer"); st != nil && (st["id"] != hid || st["status"] != "creating" || st["pid"] == float64(0)) {
		t.Errorf("createContainer hook state %v, want container %s creating with a pid", st, hid)
	}
	if _, err := e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: hid}); err != nil {
		t.Fatal(err)
	}
	if st := hookState("poststart"); st != nil && (st["id"] != hid || st["status"] != "running") {
		t.Errorf("poststart hook state %v", st)
	}
	if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: hid}); err != nil {
		t.Fatal(err)
	}
	if st := hookState("poststop"); st != nil && (st["id"] != hid || st["status"] != "stopped") {
		t.Errorf("poststop hook state %v", st)
	}
}

// TestNRIUnsolicitedUpdate: a plugin's UpdateContainers, unasked, changes
// a running container's resources.
func TestNRIUnsolicitedUpdate(t *testing.T) {
	e, sock, _ := newNRIEnv(t, "")
	p := startNRIPlugin(t, nriPluginBinary(t), sock, t.TempDir())
	podID, podCfg := e.pod(t, "nri-upd")
	id := e.run(t, podID, podCfg, nriCtr("updated", "update"))
	p.waitFor(t, "updated updated: failed 0, err <nil>")
	st, _ := e.status(t, id)
	if lim := st.GetResources().GetLinux().GetMemoryLimitInBytes(); lim != 96<<20 {
		t.Errorf("memory limit after the plugin's update %d, want %d", lim, 96<<20)
	}
}

// TestNRIPluginFailures: a plugin that refuses, adjusts what cannot be
// done, hangs or crashes fails the create with an error naming it (or is
// dropped, as NRI's adaptation does), leaves nothing of the container, and
// berthd goes on.
func TestNRIPluginFailures(t *testing.T) {
	e, sock, metrics := newNRIEnv(t, "3s")
	bin := nriPluginBinary(t)
	p := startNRIPlugin(t, bin, sock, t.TempDir())
	podID, podCfg := e.pod(t, "nri-fail")
	ctx := framework.Context(t)
	create := func(name, mode string) (string, error) {
		resp, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: nriCtr(name, mode), SandboxConfig: podCfg})
		return resp.GetContainerId(), err
	}
	noContainer := func(name string) {
		t.Helper()
		resp, err := e.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.Containers {
			if c.Metadata.Name == name {
				t.Errorf("failed create left container %s (%s)", name, c.Id)
			}
		}
		ents, _ := os.ReadDir(filepath.Join(e.dir, "state", "containers"))
		if len(ents) > 0 {
			t.Errorf("failed create of %s left state dirs %v", name, ents)
		}
	}
	for _, c := range []struct {
		mode  string
		code  codes.Code
		wants []string
	}{
		{"fail", codes.FailedPrecondition, []string{"50-berthtest", "refuses this container"}},
		{"invalid", codes.InvalidArgument, []string{"50-berthtest", "/etc/not-a-device"}},
		{"ctrhooks", codes.FailedPrecondition, []string{"createContainer hook 0 (/bin/sh)", "no such device"}},
	} {
		_, err := create("c-"+c.mode, c.mode)
		if status.Code(err) != c.code {
			t.Errorf("create with a plugin that does %s: %v, want code %v", c.mode, err, c.code)
		}
		for _, w := range c.wants {
			if err != nil && !strings.Contains(err.Error(), w) {
				t.Errorf("create with a plugin that does %s: error %q names no %q", c.mode, err, w)
			}
		}
		noContainer("c-" + c.mode)
	}

	// A plugin that does not answer within plugin_request_timeout is
	// dropped and the create goes on without it; so is one that crashes.
	for _, mode := range []string{"hang", "crash"} {
		if nriInfo(t, e).Connected != 1 {
			p = startNRIPlugin(t, bin, sock, t.TempDir())
		}
		start := time.Now()
		id, err := create("c-"+mode, mode)
		if err != nil {
			t.Errorf("create with a plugin that does %s: %v; want the plugin dropped and the create done", mode, err)
		}
		t.Logf("create with a plugin that does %s took %s", mode, time.Since(start).Round(time.Millisecond))
		if info := nriInfo(t, e); info.Connected != 0 {
			t.Errorf("after a plugin that does %s: %d plugins connected, want it dropped", mode, info.Connected)
		}
		if id != "" {
			if _, err := e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Error(err)
			}
		}
	}
	select {
	case err := <-p.done:
		p.done <- err
		if !strings.Contains(fmt.Sprint(err), "exit status 3") {
			t.Errorf("crashing plugin ended with %v, want exit status 3", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("crashing plugin still runs")
	}
	// The calls and failures are in berthd's metrics, by plugin.
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`berth_nri_plugin_errors_total{operation="CreateContainer",plugin="50-berthtest"} 3`,
		`berth_nri_plugin_call_duration_seconds_count{operation="CreateContainer",plugin="50-berthtest"}`,
		`berth_nri_plugins 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics have no %s", want)
		}
	}
	// berthd is healthy: a container runs without the plugin.
	id := e.run(t, podID, podCfg, ctrConfig("after", "sleep", "3600"))
	e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, time.Minute)
}
