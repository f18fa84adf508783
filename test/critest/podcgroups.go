package critest

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// podCgroupName is a pod's own cgroup as berth names it: berth-<pod id>
// (cgroupfs driver) or berth-<pod id>.scope (systemd driver's unit).
var podCgroupName = regexp.MustCompile(`^berth-([0-9a-f]{64})(\.scope)?$`)

// PodCgroup is one pod cgroup seen in the cgroup tree.
type PodCgroup struct {
	// Path is relative to the cgroup mount of its hierarchy, as systemd's
	// ControlGroup property names it ("/test.slice/berth-<id>.scope").
	Path  string
	PodID string
	// Scope: named as the systemd driver's unit, not as cgroupfs's dir.
	Scope bool
}

// ClassifyPodCgroup says whether a cgroup dir's name is a pod's.
func ClassifyPodCgroup(rel string) (PodCgroup, bool) {
	m := podCgroupName.FindStringSubmatch(filepath.Base(rel))
	if m == nil {
		return PodCgroup{}, false
	}
	return PodCgroup{Path: rel, PodID: m[1], Scope: m[2] != ""}, true
}

// ScanPodCgroups lists the pod cgroups under root (a cgroup v2 mount, or one
// v1 hierarchy): pods sit in the root, in slices or in cgroupfs's /berth,
// so only those are descended into, which keeps a scan cheap in the VM.
func ScanPodCgroups(root string) []PodCgroup {
	var out []PodCgroup
	var walk func(rel string, depth int)
	walk = func(rel string, depth int) {
		entries, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			return
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			child := rel + "/" + e.Name()
			if pc, ok := ClassifyPodCgroup(child); ok {
				out = append(out, pc)
				continue
			}
			if depth < 6 && (strings.HasSuffix(e.Name(), ".slice") || e.Name() == "berth") {
				walk(child, depth+1)
			}
		}
	}
	walk("", 0)
	return out
}

// PodCgroupWatch records the pod cgroups that appear while it runs (pods of
// critest live seconds, so one look at the end would see none).
type PodCgroupWatch struct {
	root   string
	check  func(PodCgroup) bool
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	seen   map[string]PodCgroup
	proved map[string]bool
}

// WatchPodCgroups scans root every interval until Stop. check, called once
// per new scope while it exists, says whether systemd owns it as a unit.
func WatchPodCgroups(root string, interval time.Duration, check func(PodCgroup) bool) *PodCgroupWatch {
	w := &PodCgroupWatch{root: root, check: check, stop: make(chan struct{}), done: make(chan struct{}),
		seen: map[string]PodCgroup{}, proved: map[string]bool{}}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			w.scan()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *PodCgroupWatch) scan() {
	for _, pc := range ScanPodCgroups(w.root) {
		w.mu.Lock()
		_, old := w.seen[pc.Path]
		w.seen[pc.Path] = pc
		w.mu.Unlock()
		if !old && pc.Scope && w.check != nil {
			ok := w.check(pc)
			w.mu.Lock()
			w.proved[pc.Path] = ok
			w.mu.Unlock()
		}
	}
}

// Stop ends the watch and returns the pod cgroups seen (by path) and the
// scopes check confirmed.
func (w *PodCgroupWatch) Stop() (seen []PodCgroup, confirmed int) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, pc := range w.seen {
		seen = append(seen, pc)
	}
	sort.Slice(seen, func(i, j int) bool { return seen[i].Path < seen[j].Path })
	for _, ok := range w.proved {
		if ok {
			confirmed++
		}
	}
	return seen, confirmed
}
