package nri

import (
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/container"
)

// An exit event that reaches the watcher after the container's removal
// must not make a new entry that plugins would be told of a second stop
// from (critest's NRI lifecycle order check saw Stop after Remove).
func TestTrackAfterForgetTellsNothing(t *testing.T) {
	n := &NRI{known: map[string]*tracked{}, gone: map[string]time.Time{}}
	rec := &container.Record{ID: "c1", PodID: "p1"}
	first := n.track(rec, nil)
	if first.stopped || first.removed {
		t.Fatalf("new entry already told: %+v", first)
	}
	n.forget(rec.ID)
	late := n.track(rec, nil)
	if !late.stopped || !late.removed {
		t.Fatalf("entry after removal would be told again: stopped=%v removed=%v", late.stopped, late.removed)
	}
	if _, ok := n.known[rec.ID]; ok {
		t.Fatal("a removed container is known again")
	}
	other := n.track(&container.Record{ID: "c2", PodID: "p1"}, nil)
	if other.stopped || other.removed {
		t.Fatal("another container counted as removed")
	}
}

func TestGoneIsPruned(t *testing.T) {
	n := &NRI{known: map[string]*tracked{}, gone: map[string]time.Time{
		"old": time.Now().Add(-goneFor - time.Minute),
	}}
	n.forget("new")
	if _, ok := n.gone["old"]; ok {
		t.Fatal("an id removed long ago is still remembered")
	}
	if _, ok := n.gone["new"]; !ok {
		t.Fatal("the id just removed is not remembered")
	}
}
