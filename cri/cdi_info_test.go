package cri

import (
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/cdi"
)

func TestStatusListsCDIDevices(t *testing.T) {
	if got := cdiInfo(nil); got != `{"specDirs":[],"devices":[]}` {
		t.Errorf("without CDI: %s", got)
	}
	dir := t.TempDir()
	spec := filepath.Join(dir, "v.yaml")
	if err := os.WriteFile(spec, []byte("cdiVersion: \"0.6.0\"\nkind: example.com/gpu\ndevices:\n- name: g0\n  containerEdits:\n    env: [\"G=0\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("cdiVersion: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := cdi.New([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := NewServer(Options{CDI: r})
	resp, err := s.Status(t.Context(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"specDirs":["` + dir + `"],"devices":[{"name":"example.com/gpu=g0","spec":"` + spec + `"}],"errors":{"` + filepath.Join(dir, "broken.yaml") + `":`
	if got := resp.Info["cdi"]; len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("Status info cdi = %s\nwant it to start with %s", got, want)
	}
}
