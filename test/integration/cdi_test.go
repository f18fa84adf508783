package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// TestCDIDevices hands a CDI device to containers: a spec written by the
// test while berthd runs (vendor example.com/dev: a device node that is a
// copy of /dev/null, an environment variable and a read-only mount)
// reaches containers that name it in cdi_devices or in a cdi.k8s.io/*
// annotation, in a pod with its own user namespace too, and is listed by
// Status(verbose) with its spec file. The device is still there, and
// still reported, after a berthd restart; an unknown device is
// InvalidArgument naming it, and leaves nothing behind.
func TestCDIDevices(t *testing.T) {
	f := newCDIFixture(t, "from the vendor\n", "cdi-none")
	dir, specDir, dataDir := f.dir, f.specDir, f.dataDir
	// The device node of the spec: /dev/null's numbers under another name,
	// in /dev (the test dir may be on a nodev mount, as in hack/vm: a pod
	// with a user namespace gets the node's file bound, and could not
	// open it there).
	node := "/dev/" + filepath.Base(dir) + "-null"
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(node) })
	if err := os.Chmod(node, 0o666); err != nil {
		t.Fatal(err)
	}

	e := f.env
	start := func() { f.start(t) }
	start()
	ctx := framework.Context(t)
	f.pullBusybox(t)

	// Written after the start: the spec dirs are watched.
	specPath := filepath.Join(specDir, "example.yaml")
	writeFile(t, specPath, fmt.Sprintf(`cdiVersion: "0.6.0"
kind: example.com/dev
devices:
- name: null0
  containerEdits:
    env: ["EXAMPLE_DEV=null0"]
    deviceNodes:
    - path: /dev/example-null0
      hostPath: %s
    mounts:
    - hostPath: %s
      containerPath: /opt/example
      options: [ro, bind]
`, node, dataDir))
	const dev = "example.com/dev=null0"
	deadline := time.Now().Add(30 * time.Second)
	for {
		if devs := cdiDevicesListed(t, e.d); slices.Contains(devs, dev+" "+specPath) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("Status(verbose) lists CDI devices %v, not %s from %s", devs, dev, specPath)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// What a container that got the device sees.
	probe := []string{"sh", "-c", `stat -c '%F %t:%T' /dev/example-null0 && echo data > /dev/example-null0 && echo wrote && cat /opt/example/hello && echo "env=$EXAMPLE_DEV" && (touch /opt/example/x 2>/dev/null && echo rw || echo ro)`}
	const want = "character special file 1:3\nwrote\nfrom the vendor\nenv=null0\nro\n"
	see := func(id, what string) {
		t.Helper()
		r := e.execSync(t, id, probe...)
		if string(r.Stdout) != want || r.ExitCode != 0 {
			t.Errorf("%s: the container sees (exit %d):\n%s%s\nwant:\n%s", what, r.ExitCode, r.Stdout, r.Stderr, want)
		}
	}

	podID, podCfg := e.pod(t, "cdi")
	byField := ctrConfig("byfield", "sleep", "1000")
	byField.CDIDevices = []*runtimeapi.CDIDevice{{Name: dev}}
	fieldID := e.run(t, podID, podCfg, byField)
	see(fieldID, "cdi_devices")
	byAnnotation := ctrConfig("byannotation", "sleep", "1000")
	byAnnotation.Annotations = map[string]string{"cdi.k8s.io/example-plugin_null0": dev}
	annID := e.run(t, podID, podCfg, byAnnotation)
	see(annID, "cdi.k8s.io annotation")
	plain := e.run(t, podID, podCfg, ctrConfig("plain", "sleep", "1000"))
	if r := e.execSync(t, plain, "sh", "-c", "test -e /dev/example-null0 || test -e /opt/example || echo none"); string(r.Stdout) != "none\n" {
		t.Errorf("a container that named no device got it: %q", r.Stdout)
	}

	// A pod with its own user namespace: no device can be made there, the
	// node's file is bound.
	st, err := e.d.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.RuntimeHandlers[0].GetFeatures().GetUserNamespaces() {
		upCfg := e.usernsPod("cdi-userns", false)
		upID := runPod(t, e.d, upCfg)
		uc := usernsCtr("userns", upCfg, "sleep", "1000")
		uc.CDIDevices = []*runtimeapi.CDIDevice{{Name: dev}}
		see(e.run(t, upID, upCfg, uc), "user namespace pod")
	} else if os.Getenv("BERTH_VM_VARIANT") == "" {
		t.Error("no user namespaces on this host")
	}

	// Unknown: refused naming it, before anything is made.
	before := refusedCreateLeftovers(t, e)
	bad := ctrConfig("unknown", "sleep", "1000")
	bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: dev}, {Name: "example.com/dev=nope"}}
	_, err = e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg})
	if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "example.com/dev=nope") {
		t.Errorf("unknown CDI device: %v, want InvalidArgument naming example.com/dev=nope", err)
	}
	bad.CDIDevices = nil
	bad.Annotations = map[string]string{"cdi.k8s.io/x": "not a device name"}
	if _, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg}); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("malformed cdi.k8s.io annotation: %v, want InvalidArgument", err)
	}
	if after := refusedCreateLeftovers(t, e); !slices.Equal(before, after) {
		t.Errorf("a refused create left something: before %v, after %v", before, after)
	}

	// A berthd restart keeps the device in the container and in its status.
	e.d.Kill()
	start()
	for _, id := range []string{fieldID, annID} {
		s, info := e.status(t, id)
		if s.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container %s after the restart: %v", s.Metadata.Name, s.State)
		}
		if got, _ := json.Marshal(info["cdiDevices"]); string(got) != `["`+dev+`"]` {
			t.Errorf("container %s after the restart: status info cdiDevices %s", s.Metadata.Name, got)
		}
		spec, _ := json.Marshal(info["runtimeSpec"])
		if !strings.Contains(string(spec), `"/dev/example-null0"`) || !strings.Contains(string(spec), "EXAMPLE_DEV=null0") {
			t.Errorf("container %s after the restart: runtime spec without the device: %s", s.Metadata.Name, spec)
		}
		see(id, s.Metadata.Name+" after a berthd restart")
	}
	if _, info := e.status(t, plain); info["cdiDevices"] != nil {
		t.Errorf("plain container reports CDI devices %v", info["cdiDevices"])
	}
	if devs := cdiDevicesListed(t, e.d); !slices.Contains(devs, dev+" "+specPath) {
		t.Errorf("after the restart Status(verbose) lists %v", devs)
	}

	// A removed spec: its device is gone for new containers.
	if err := os.Remove(specPath); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for len(cdiDevicesListed(t, e.d)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the device of a removed spec is still listed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	again := ctrConfig("again", "sleep", "1000")
	again.CDIDevices = []*runtimeapi.CDIDevice{{Name: dev}}
	if _, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: again, SandboxConfig: podCfg}); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("device of a removed spec: %v, want InvalidArgument", err)
	}
}

// removePodsOf removes the pods of a berthd that still answers.
// cdiFixture is what a CDI test's berthd is started on: a registry of the
// test images (in certs.d), a pod network, a dir of CDI specs (specDir)
// that the config's cdi_spec_dirs names, and one of data for the specs'
// mounts (dataDir) holding the file "hello".
type cdiFixture struct {
	env                   *ctrEnv
	dir, specDir, dataDir string
}

// newCDIFixture makes the fixture; cdi_spec_dirs has dir/<name> of
// before (a dir that need not exist) ahead of specDir.
func newCDIFixture(t *testing.T, hello string, before ...string) *cdiFixture {
	t.Helper()
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	f := &cdiFixture{env: &ctrEnv{podNet: newPodNet(t, dir)}, dir: dir, specDir: filepath.Join(dir, "cdi"), dataDir: filepath.Join(dir, "cdi-data")}
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	mkdirs(t, f.specDir, f.dataDir)
	writeFile(t, filepath.Join(f.dataDir, "hello"), hello)
	var dirs []string
	for _, b := range before {
		dirs = append(dirs, strconv.Quote(filepath.Join(dir, b)))
	}
	dirs = append(dirs, strconv.Quote(f.specDir))
	writeFile(t, filepath.Join(dir, "config.toml"), "cdi_spec_dirs = ["+strings.Join(dirs, ", ")+"]\n")
	return f
}

// start starts (or starts again) berthd; it removes its pods before it
// is stopped (a cleanup runs before those registered earlier).
func (f *cdiFixture) start(t *testing.T) {
	t.Helper()
	d := f.env.start(t, "-v", "4")
	f.env.d = d
	t.Cleanup(func() { removePodsOf(t, d) })
}

func (f *cdiFixture) pullBusybox(t *testing.T) {
	t.Helper()
	if _, err := f.env.d.Images.PullImage(framework.Context(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxRef}}); err != nil {
		t.Fatalf("pull busybox: %v", err)
	}
}

func removePodsOf(t *testing.T, d *framework.Daemon) {
	resp, err := d.Runtime.ListPodSandbox(framework.Context(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range resp.Items {
		removePod(t, d, p.Id)
	}
}

// cdiDevicesListed is Status(verbose)'s CDI devices as "name spec-file".
func cdiDevicesListed(t *testing.T, d *framework.Daemon) []string {
	t.Helper()
	st, err := d.Runtime.Status(framework.Context(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Devices []struct{ Name, Spec string } `json:"devices"`
	}
	if err := json.Unmarshal([]byte(st.Info["cdi"]), &info); err != nil {
		t.Fatalf("Status info cdi %q: %v", st.Info["cdi"], err)
	}
	var out []string
	for _, dv := range info.Devices {
		out = append(out, dv.Name+" "+dv.Spec)
	}
	return out
}

// containerLeftovers is what berthd keeps of containers: ids listed, state
// and layer dirs, mounts.
func refusedCreateLeftovers(t *testing.T, e *ctrEnv) []string {
	t.Helper()
	var out []string
	resp, err := e.d.Runtime.ListContainers(framework.Context(t), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Containers {
		out = append(out, "ctr "+c.Id)
	}
	for _, d := range []string{filepath.Join(e.d.State, "containers"), filepath.Join(e.d.Root, "containers")} {
		entries, _ := os.ReadDir(d)
		for _, en := range entries {
			out = append(out, filepath.Join(d, en.Name()))
		}
	}
	out = append(out, mountsBelow(e.dir)...)
	slices.Sort(out)
	return out
}
