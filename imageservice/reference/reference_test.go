package reference

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/errdefs"
)

func TestParse(t *testing.T) {
	d := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"busybox":                           "docker.io/library/busybox:latest",
		"busybox:1.36":                      "docker.io/library/busybox:1.36",
		"library/busybox":                   "docker.io/library/busybox:latest",
		"docker.io/busybox":                 "docker.io/library/busybox:latest",
		"index.docker.io/library/busybox:1": "docker.io/library/busybox:1",
		"user/app":                          "docker.io/user/app:latest",
		"busybox@" + d:                      "docker.io/library/busybox@" + d,
		"busybox:1@" + d:                    "docker.io/library/busybox:1@" + d,
		"registry.k8s.io/pause:3.9":         "registry.k8s.io/pause:3.9",
		"localhost/app":                     "localhost/app:latest",
		"127.0.0.1:5000/a/b/c:t":            "127.0.0.1:5000/a/b/c:t",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:1": "gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	} {
		r, err := Parse(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if r.String() != want {
			t.Errorf("%s → %s, want %s", in, r.String(), want)
		}
	}
	r, _ := Parse("busybox:1@" + d)
	if r.DigestRef() != "docker.io/library/busybox@"+d || r.TagRef() != "docker.io/library/busybox:1" {
		t.Errorf("refs: %s %s", r.DigestRef(), r.TagRef())
	}
	if f := r.Familiar(); f != "busybox:1@"+d {
		t.Errorf("familiar %s", f)
	}
	for _, bad := range []string{"", "UPPER", "a//b", "busybox@sha256:short", "busybox:", ":tag", "a/b:t:t", "bad host!/x", "x@md5:00"} {
		if _, err := Parse(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: err = %v, want invalid argument", bad, err)
		}
	}
}

func TestIDPrefix(t *testing.T) {
	for in, ok := range map[string]bool{"abc123": true, "sha256:abc": true, "busybox": false, "": false, "sha256:": false} {
		if _, got := IDPrefix(in); got != ok {
			t.Errorf("IDPrefix(%q) = %v", in, got)
		}
	}
}
