package integration

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// TestPullMissingTagMessage pulls a tag the local registry lacks (answered
// as the distribution registry does, with a details map) through its
// hosts.toml, where it is both the mirror and the registry: NotFound, in one
// sentence naming the reference, the registry and what it said, and the
// mirror tried first; no request URL, redacted query or Go map.
func TestPullMissingTagMessage(t *testing.T) {
	reg := framework.StartRegistry(t, framework.WithRegistryWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/busybox/manifests/1.0") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"1.0"}}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	dir := framework.NewDirs(t)
	if err := reg.WriteHosts(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	d := framework.StartDaemon(t, dir)
	_, err := d.Images.PullImage(framework.Context(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1.0"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("pull of a missing tag: %v, want NotFound", err)
	}
	host := "http://" + reg.Addr + "/v2/docker.io"
	want := "pull docker.io/library/busybox:1.0: registry " + host + " answered 404 manifest unknown, after mirror " + host + " answered the same"
	if msg := status.Convert(err).Message(); msg != want {
		t.Errorf("message:\n got %s\nwant %s", msg, want)
	}
	// crictl prints the error twice (klog, then its own log): once a line.
	out, err := d.Crictl(t, "pull", "busybox:1.0")
	if err == nil || !strings.Contains(out, want) || strings.Contains(out, "REDACTED") || strings.Contains(out, "map[") {
		t.Errorf("crictl pull of a missing tag: %v\n%s", err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Count(l, "manifest unknown") > 1 {
			t.Errorf("crictl repeats the failure in a line: %s", l)
		}
	}
}
