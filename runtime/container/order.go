package container

import (
	"cmp"
	"slices"
)

// byAge keeps the records oldest first, as List returns them, so that a
// list costs no sort: the kubelet lists every container every second, and
// a change (create, update, removal) is rare beside that. Records created
// in the same nanosecond are ordered by id.
type byAge []*Record

func compareAge(a, b *Record) int {
	if c := a.Status.CreatedAt.Compare(b.Status.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// sorted builds the order of records.
func sorted(records map[string]*Record) byAge {
	o := make(byAge, 0, len(records))
	for _, r := range records {
		o = append(o, r)
	}
	slices.SortFunc(o, compareAge)
	return o
}

// add places r; a new record is usually the newest, so this appends.
func (o *byAge) add(r *Record) {
	i, _ := slices.BinarySearchFunc(*o, r, compareAge)
	*o = slices.Insert(*o, i, r)
}

// remove takes r's place out; r is the record stored, or one with its id
// and creation time.
func (o *byAge) remove(r *Record) {
	if i, ok := slices.BinarySearchFunc(*o, r, compareAge); ok {
		*o = slices.Delete(*o, i, i+1)
	}
}

// replace puts cur where old was (moving it if its creation time changed).
func (o *byAge) replace(old, cur *Record) {
	if i, ok := slices.BinarySearchFunc(*o, old, compareAge); ok && compareAge(old, cur) == 0 {
		(*o)[i] = cur
		return
	}
	o.remove(old)
	o.add(cur)
}
