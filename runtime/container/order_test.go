package container

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// The store's order stays the records sorted by age through adds,
// updates (some moving a record's creation time), deletes and trashing.
func TestStoreOrder(t *testing.T) {
	db, _ := openDB(t)
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	base := time.Unix(1700000000, 0)
	var ids []string
	check := func(step string) {
		t.Helper()
		got := s.view(func(*Record) bool { return true })
		want := slices.Clone(got)
		slices.SortFunc(want, compareAge)
		if len(got) != len(ids) || !slices.Equal(got, want) {
			t.Fatalf("%s: %d records listed (want %d), in order: %v", step, len(got), len(ids), slices.Equal(got, want))
		}
		for _, r := range got {
			if s.records[r.ID] != r {
				t.Fatalf("%s: listed record %s is not the one stored", step, r.ID)
			}
		}
	}
	for i := range 300 {
		switch op := rng.Intn(10); {
		case op < 5 || len(ids) == 0:
			id := fmt.Sprintf("c%03d", i)
			// Mostly newest, some older, some in the same nanosecond.
			at := base.Add(time.Duration(i) * time.Second)
			if rng.Intn(4) == 0 {
				at = base.Add(time.Duration(rng.Intn(i+1)) * time.Second)
			}
			if err := s.Add(&Record{ID: id, PodID: "p", Name: id, Status: Status{CreatedAt: at}}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		case op < 8:
			id := ids[rng.Intn(len(ids))]
			move := rng.Intn(3) == 0
			if _, err := s.Update(id, func(r *Record) error {
				r.Status.State = Running
				if move {
					r.Status.CreatedAt = base.Add(time.Duration(rng.Intn(300)) * time.Second)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		default:
			k := rng.Intn(len(ids))
			if rng.Intn(2) == 0 {
				err = s.Delete(ids[k])
			} else {
				_, err = s.Trash(ids[k])
			}
			if err != nil {
				t.Fatal(err)
			}
			ids = slices.Delete(ids, k, k+1)
		}
		check(fmt.Sprintf("step %d", i))
	}
	// A store opened again has the same order.
	s2, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.order) != len(s.order) {
		t.Fatalf("reopened: %d records, want %d", len(s2.order), len(s.order))
	}
	for i := range s.order {
		if s2.order[i].ID != s.order[i].ID {
			t.Fatalf("reopened: record %d is %s, want %s", i, s2.order[i].ID, s.order[i].ID)
		}
	}
}
