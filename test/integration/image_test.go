package integration

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imageservice/imagetest"
	"github.com/berth-dev/berth/test/framework"
	"github.com/berth-dev/berth/test/framework/testimages"
)

// inspect is what `crictl inspecti -o json` prints.
type inspect struct {
	Status struct {
		ID          string   `json:"id"`
		RepoTags    []string `json:"repoTags"`
		RepoDigests []string `json:"repoDigests"`
		Size        string   `json:"size"`
		Pinned      bool     `json:"pinned"`
	} `json:"status"`
	Info struct {
		ImageSpec struct {
			Config struct {
				User string   `json:"User"`
				Env  []string `json:"Env"`
			} `json:"config"`
		} `json:"imageSpec"`
		LayerDirs []string `json:"layerDirs"`
	} `json:"info"`
}

func crictl(t *testing.T, d *framework.Daemon, args ...string) string {
	t.Helper()
	out, err := d.Crictl(t, args...)
	if err != nil {
		t.Fatalf("crictl %s: %v\n%s\n%s", strings.Join(args, " "), err, out, d.Logs())
	}
	return out
}

func TestCrictlImages(t *testing.T) {
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(`pinned_images = ["registry.k8s.io/pause:3.9"]`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := framework.StartDaemon(t, dir)

	out := crictl(t, d, "pull", "busybox")
	if !strings.Contains(out, "sha256:") {
		t.Errorf("crictl pull: %s", out)
	}
	out = crictl(t, d, "images")
	if !strings.Contains(out, "docker.io/library/busybox") || !strings.Contains(out, "latest") {
		t.Errorf("crictl images lacks busybox:\n%s", out)
	}
	var ins inspect
	out = crictl(t, d, "inspecti", "-o", "json", "busybox")
	if err := json.Unmarshal([]byte(out), &ins); err != nil {
		t.Fatalf("inspecti: %v\n%s", err, out)
	}
	if !strings.HasPrefix(ins.Status.ID, "sha256:") || len(ins.Status.RepoTags) != 1 || ins.Status.RepoTags[0] != "docker.io/library/busybox:latest" ||
		len(ins.Status.RepoDigests) != 1 || ins.Status.Size == "" || ins.Status.Size == "0" || ins.Status.Pinned {
		t.Errorf("status = %+v", ins.Status)
	}
	if len(ins.Info.ImageSpec.Config.Env) == 0 {
		t.Errorf("verbose info lacks the image config: %s", out)
	}
	// The busybox fixture: libs, busybox with hard-linked applets, a rootfs
	// with users' files, and a layer of whiteouts.
	l := ins.Info.LayerDirs
	if len(l) != 4 {
		t.Fatalf("layer dirs = %v", l)
	}
	for _, ld := range l {
		if !strings.HasPrefix(ld, filepath.Join(d.Root, "images", "layers")+"/") {
			t.Errorf("layer dir %s outside the image store", ld)
		}
	}
	var a, b unix.Stat_t
	if err := unix.Lstat(filepath.Join(l[1], "bin/busybox"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(l[1], "bin/sh"), &b); err != nil || a.Ino != b.Ino {
		t.Errorf("bin/sh is not a hard link of bin/busybox: %v", err)
	}
	if err := unix.Lstat(filepath.Join(l[2], "home/berth1"), &a); err != nil || a.Uid != 4001 || a.Gid != 4001 || a.Mode&0o7777 != 0o750 {
		t.Errorf("home/berth1: %v uid %d gid %d mode %o", err, a.Uid, a.Gid, a.Mode&0o7777)
	}
	if err := unix.Lstat(filepath.Join(l[2], "tmp"), &a); err != nil || a.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp: %v mode %o", err, a.Mode&0o7777)
	}
	if err := unix.Lstat(filepath.Join(l[3], "etc/berth/remove-me"), &a); err != nil || a.Mode&unix.S_IFMT != unix.S_IFCHR || a.Rdev != 0 {
		t.Errorf("whiteout etc/berth/remove-me: %v mode %o", err, a.Mode)
	}
	x := make([]byte, 2)
	if n, err := unix.Getxattr(filepath.Join(l[3], "var/cache/berth"), "trusted.overlay.opaque", x); err != nil || string(x[:n]) != "y" {
		t.Errorf("opaque var/cache/berth: %q %v", x[:n], err)
	}

	// Pinned, and the other layer formats, by the CRI.
	ctx := framework.Context(t)
	for _, ref := range []string{"registry.k8s.io/pause:3.9", testimages.MixedLayersRef} {
		if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
	}
	st, err := d.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/pause:3.9"}})
	if err != nil || st.Image == nil || !st.Image.Pinned {
		t.Errorf("pause status: %v %v", st, err)
	}
	lst, err := d.Images.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: ins.Status.ID[7:19]}}})
	if err != nil || len(lst.Images) != 1 || lst.Images[0].Id != ins.Status.ID {
		t.Errorf("list by ID prefix: %v %v", lst, err)
	}

	stream, err := d.Images.StreamImages(ctx, &runtimeapi.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	streamed := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("StreamImages: %v", err)
		}
		streamed += len(resp.Images)
	}
	if streamed != 3 {
		t.Errorf("StreamImages sent %d images, want 3", streamed)
	}

	out = crictl(t, d, "imagefsinfo", "-o", "json")
	var fsinfo struct {
		Status struct {
			ImageFilesystems []struct {
				FsID       struct{ Mountpoint string } `json:"fsId"`
				UsedBytes  struct{ Value string }      `json:"usedBytes"`
				InodesUsed struct{ Value string }      `json:"inodesUsed"`
			} `json:"imageFilesystems"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &fsinfo); err != nil || len(fsinfo.Status.ImageFilesystems) != 1 {
		t.Fatalf("imagefsinfo: %v\n%s", err, out)
	}
	fs := fsinfo.Status.ImageFilesystems[0]
	if fs.FsID.Mountpoint != filepath.Join(d.Root, "images", "layers") || fs.UsedBytes.Value == "0" || fs.InodesUsed.Value == "0" {
		t.Errorf("imagefsinfo = %+v", fs)
	}

	crictl(t, d, "rmi", "busybox")
	if out := crictl(t, d, "images"); strings.Contains(out, "busybox") {
		t.Errorf("busybox still listed after rmi:\n%s", out)
	}
	// Its layers other images use stay; the others go.
	inUse := map[string]bool{}
	for _, ref := range []string{"registry.k8s.io/pause:3.9", testimages.MixedLayersRef} {
		st, err := d.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: true})
		if err != nil || st.Image == nil {
			t.Fatalf("status %s: %v", ref, err)
		}
		var info struct{ LayerDirs []string }
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
			t.Fatal(err)
		}
		for _, ld := range info.LayerDirs {
			inUse[ld] = true
		}
	}
	for _, ld := range l {
		if _, err := os.Stat(ld); inUse[ld] != (err == nil) {
			t.Errorf("layer %s (used by another image: %v) after rmi busybox: %v", ld, inUse[ld], err)
		}
	}
	// Idempotent.
	if _, err := d.Images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ins.Status.ID}}); err != nil {
		t.Errorf("second remove: %v", err)
	}
	crictl(t, d, "rmi", "--all")
	ents, _ := os.ReadDir(filepath.Join(d.Root, "images", "layers"))
	if len(ents) != 0 {
		t.Errorf("%d layer dirs stay after rmi --all", len(ents))
	}
}

// TestBadRegistryPulls pulls from a registry that misbehaves: each pull
// fails with its own code and leaves no layer, temp dir or record.
func TestBadRegistryPulls(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	good := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "etc/", Type: tar.TypeDir}, imagetest.Entry{Name: "etc/hostname", Body: "x\n"})
	bad := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "bin/", Type: tar.TypeDir}, imagetest.Entry{Name: "bin/sh", Body: strings.Repeat("sh", 4096), Mode: 0o755})
	escape := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "ok"}, imagetest.Entry{Name: "../../../../escaped-by-berth-test", Body: "x"})
	ref := reg.Push(t, "test/bad:v1", imagetest.Image(t, false, "", good, bad))
	escRef := reg.Push(t, "test/escape:v1", imagetest.Image(t, true, "", good, escape))
	badDigest := imagetest.Digest(t, bad)

	d := framework.StartDaemon(t, "")
	ctx := framework.Context(t)
	pull := func(ref string, auth *runtimeapi.AuthConfig, timeout time.Duration) error {
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := d.Images.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
		return err
	}
	nothingLeft := func(t *testing.T) {
		t.Helper()
		// After a deadline the client may hear of it before berthd has
		// finished cleaning up: give it a moment.
		for _, sub := range []string{"layers", "tmp"} {
			var ents []os.DirEntry
			var err error
			for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				ents, err = os.ReadDir(filepath.Join(d.Root, "images", sub))
				if (err == nil && len(ents) == 0) || time.Now().After(end) {
					break
				}
			}
			if err != nil || len(ents) != 0 {
				t.Errorf("images/%s after a failed pull: %v %v", sub, ents, err)
			}
		}
		lst, err := d.Images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err != nil || len(lst.Images) != 0 {
			t.Errorf("images listed after a failed pull: %v %v", lst, err)
		}
	}
	capture := func(next http.Handler, r *http.Request) []byte {
		rec := &recorder{h: http.Header{}}
		next.ServeHTTP(rec, r)
		return rec.body
	}
	cases := []struct {
		name string
		wrap func(w http.ResponseWriter, r *http.Request, next http.Handler)
		ref  string
		code codes.Code
	}{
		{"wrong digest", imagetest.BlobHandler(badDigest, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			b := capture(next, r)
			b[len(b)-10] ^= 0x55
			w.Write(b)
		}), ref, codes.DataLoss},
		{"truncated blob", imagetest.BlobHandler(badDigest, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			b := capture(next, r)
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:len(b)/3])
		}), ref, codes.DataLoss},
		{"blob 404", imagetest.BlobHandler(badDigest, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`, http.StatusNotFound)
		}), ref, codes.NotFound},
		{"manifest 404", nil, ref + "x", codes.NotFound},
		{"401 without credentials", requireBasic("berth", "s3cret"), ref, codes.Unauthenticated},
		{"path escape", nil, escRef, codes.InvalidArgument},
		{"stalled blob and a deadline", imagetest.BlobHandler(badDigest, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			b := capture(next, r)
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:1])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}), ref, codes.DeadlineExceeded},
		{"not a reference", nil, "UPPER/case", codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg.Wrap = tc.wrap
			defer func() { reg.Wrap = nil }()
			err := pull(tc.ref, nil, 3*time.Second)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			t.Logf("%v", err)
			nothingLeft(t)
		})
	}
	if _, err := os.Stat("/tmp/escaped-by-berth-test"); err == nil {
		os.Remove("/tmp/escaped-by-berth-test")
		t.Errorf("a layer wrote outside its dir")
	}

	// With credentials the same registry lets us in.
	reg.Wrap = requireBasic("berth", "s3cret")
	defer func() { reg.Wrap = nil }()
	if err := pull(ref, &runtimeapi.AuthConfig{Username: "berth", Password: "s3cret"}, time.Minute); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	// The database holds that image and its two layers only.
	d.Stop(t)
	db, err := bolt.Open(filepath.Join(d.Root, "berth.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counts := map[string]int{}
	db.View(func(tx *bolt.Tx) error {
		for _, b := range []string{"images", "image-layers", "image-users"} {
			if bk := tx.Bucket([]byte(b)); bk != nil {
				counts[b] = bk.Stats().KeyN
			}
		}
		return nil
	})
	if counts["images"] != 1 || counts["image-layers"] != 2 || counts["image-users"] != 0 {
		t.Errorf("records = %v, want 1 image and 2 layers", counts)
	}
}

type recorder struct {
	h    http.Header
	body []byte
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(int)             {}
func (r *recorder) Write(b []byte) (int, error) { r.body = append(r.body, b...); return len(b), nil }

func requireBasic(user, pass string) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}
}

// TestCritestImageManager runs critest's image specs against berthd with the
// test registry as every upstream's mirror. The digest spec is skipped: its
// image is pinned by a digest only the original build has.
func TestCritestImageManager(t *testing.T) {
	critest, err := exec.LookPath("critest")
	if err != nil {
		t.Skip("critest is not installed (make deps installs it)")
	}
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	d := framework.StartDaemon(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, critest, "--runtime-endpoint", d.Endpoint, "--image-endpoint", d.Endpoint,
		"-ginkgo.no-color", "-ginkgo.focus", `Image Manager|Image Consistency|Idempotence RemoveImage`,
		"-ginkgo.skip", `public image with digest`)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("critest: %v\n%s\nberthd:\n%s", err, out, d.Logs())
	}
	if !strings.Contains(string(out), "0 Failed") || strings.Contains(string(out), " 0 Passed") {
		t.Errorf("critest output:\n%s", out)
	}
}

// TestImagesSurviveRestart: images pulled before a kill -9 are there after
// the restart, and a pull the kill interrupted leaves nothing behind.
func TestImagesSurviveRestart(t *testing.T) {
	reg := framework.StartRegistry(t)
	dir := framework.NewDirs(t)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	d := framework.StartDaemon(t, dir)
	ctx := framework.Context(t)
	resp, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	// Kill berthd in the middle of pulling the big image.
	pulling := make(chan error, 1)
	go func() {
		_, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: testimages.BenchRef}})
		pulling <- err
	}()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if ents, _ := os.ReadDir(filepath.Join(d.Root, "images", "tmp")); len(ents) > 0 {
			break
		}
	}
	d.Kill()
	<-pulling

	d2 := framework.StartDaemon(t, dir)
	st, err := d2.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}, Verbose: true})
	if err != nil || st.Image == nil || st.Image.Id != resp.ImageRef {
		t.Fatalf("busybox after restart: %v %v", st, err)
	}
	var info struct{ LayerDirs []string }
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, ld := range info.LayerDirs {
		want[filepath.Base(ld)] = true
	}
	ents, _ := os.ReadDir(filepath.Join(d2.Root, "images", "layers"))
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("layer dir %s of the interrupted pull survived the restart", e.Name())
		}
	}
	if len(ents) != len(want) {
		t.Errorf("%d layer dirs, want busybox's %d", len(ents), len(want))
	}
	if tmp, _ := os.ReadDir(filepath.Join(d2.Root, "images", "tmp")); len(tmp) != 0 {
		t.Errorf("temp dirs survived the restart: %v", tmp)
	}
	if st, _ := d2.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: testimages.BenchRef}}); st.GetImage() != nil {
		t.Errorf("the interrupted pull's image is listed")
	}
}
