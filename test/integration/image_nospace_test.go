package integration

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imageservice/imagetest"
	"github.com/berth-dev/berth/test/framework"
)

// TestPullOntoFullRoot pulls an image larger than berthd's root file system:
// the pull fails with ResourceExhausted naming the image store under the
// root, not Unavailable blaming the registry; no layer, temp dir, image or
// database record stays; and once there is room the same pull succeeds.
func TestPullOntoFullRoot(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	big := make([]byte, 12<<20)
	rand.Read(big)
	small := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "etc/", Type: tar.TypeDir}, imagetest.Entry{Name: "etc/hostname", Body: "x\n"})
	large := imagetest.Layer(t, imagetest.Gzip, imagetest.Entry{Name: "big", Body: string(big)})
	ref := reg.Push(t, "test/big:v1", imagetest.Image(t, false, "", small, large))

	dir := framework.NewDirs(t)
	root := filepath.Join(dir, "root")
	fs := imagetest.MountTmpfs(t, root, 4<<20)
	d := framework.StartDaemon(t, dir)
	pull := func() error {
		// A generous bound on a hang, not a measure of speed.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	}

	err := pull()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("pull onto a full root: %v, want ResourceExhausted\n%s", err, d.Logs())
	}
	t.Logf("%v", err)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "no space left on the file system of "+filepath.Join(root, "images")) {
		t.Errorf("the message does not name the image store's file system: %s", msg)
	}
	for _, sub := range []string{"layers", "tmp"} {
		if ents, err := os.ReadDir(filepath.Join(root, "images", sub)); err != nil || len(ents) != 0 {
			t.Errorf("images/%s after the failed pull: %v %v", sub, ents, err)
		}
	}
	ctx := framework.Context(t)
	if lst, err := d.Images.ListImages(ctx, &runtimeapi.ListImagesRequest{}); err != nil || len(lst.Images) != 0 {
		t.Errorf("images listed after the failed pull: %v %v", lst, err)
	}
	d.Stop(t)
	db, err := bolt.Open(filepath.Join(root, "berth.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		for _, b := range []string{"images", "image-layers", "image-users"} {
			if bk := tx.Bucket([]byte(b)); bk != nil && bk.Stats().KeyN != 0 {
				t.Errorf("database bucket %s holds %d records after the failed pull", b, bk.Stats().KeyN)
			}
		}
		return nil
	})
	db.Close()

	fs.Resize(t, 64<<20)
	d = framework.StartDaemon(t, dir)
	if err := pull(); err != nil {
		t.Fatalf("pull once there is room: %v\n%s", err, d.Logs())
	}
	st, err := d.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil || st.GetImage() == nil {
		t.Fatalf("image status after the pull: %v %v", st, err)
	}
}
