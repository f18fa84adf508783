package critest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClassifyPodCgroup(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for rel, want := range map[string]*PodCgroup{
		"/test.slice/berth-" + id + ".scope": {Path: "/test.slice/berth-" + id + ".scope", PodID: id, Scope: true},
		"/berth/berth-" + id:                 {Path: "/berth/berth-" + id, PodID: id},
		"/test.slice/berth-" + id[:10]:       nil,
		"/berth-" + id + ".slice":            nil,
		"/berth":                             nil,
	} {
		got, ok := ClassifyPodCgroup(rel)
		if (want != nil) != ok || want != nil && got != *want {
			t.Errorf("ClassifyPodCgroup(%q) = %+v, %v; want %+v", rel, got, ok, want)
		}
	}
}

func TestScanPodCgroups(t *testing.T) {
	root := t.TempDir()
	id1, id2, id3 := strings.Repeat("1", 64), strings.Repeat("2", 64), strings.Repeat("3", 64)
	for _, d := range []string{
		"test.slice/berth-" + id1 + ".scope/ctr",
		"kubepods.slice/kubepods-burstable.slice/berth-" + id2 + ".scope",
		"berth/berth-" + id3,
		// not descended into: a pod's name inside some service's cgroup
		"system.slice/foo.service/berth-" + id1,
	} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, pc := range ScanPodCgroups(root) {
		got = append(got, pc.Path)
	}
	want := []string{
		"/berth/berth-" + id3,
		"/kubepods.slice/kubepods-burstable.slice/berth-" + id2 + ".scope",
		"/test.slice/berth-" + id1 + ".scope",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ScanPodCgroups = %v, want %v", got, want)
	}
}

func TestPodCgroupWatch(t *testing.T) {
	root := t.TempDir()
	id := strings.Repeat("4", 64)
	checked := make(chan string, 10)
	w := WatchPodCgroups(root, 5*time.Millisecond, func(pc PodCgroup) bool {
		checked <- pc.Path
		return true
	})
	scope := filepath.Join(root, "test.slice", "berth-"+id+".scope")
	if err := os.MkdirAll(scope, 0o755); err != nil {
		t.Fatal(err)
	}
	select {
	case <-checked:
	case <-time.After(5 * time.Second):
		t.Fatal("the new scope was never checked")
	}
	// gone again before the end, as critest's pods are
	if err := os.Remove(scope); err != nil {
		t.Fatal(err)
	}
	seen, confirmed := w.Stop()
	if len(seen) != 1 || !seen[0].Scope || seen[0].PodID != id || confirmed != 1 {
		t.Errorf("Stop = %+v, %d; want the one scope, confirmed", seen, confirmed)
	}
	if len(checked) != 0 {
		t.Errorf("a scope was checked more than once")
	}
}
