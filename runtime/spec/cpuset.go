package spec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// maxListID bounds a CPU or memory node number (the kernel's NR_CPUS is
// at most 8192), so that a list cannot make a huge set.
const maxListID = 1 << 16

// maxListWork bounds the members a list may name, counting repeats, so
// that a request of "0-65535," many times over costs no more than a node
// with every possible CPU; and maxListLen its text, which lists every
// other of 8192 CPUs with room to spare.
const (
	maxListWork = 1 << 17
	maxListLen  = 64 << 10
)

// ParseList parses a cpuset list ("0-3,8,10-11") into its members; an
// empty list has none.
func ParseList(s string) (map[int]bool, error) {
	out := map[int]bool{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, nil
	}
	if len(s) > maxListLen {
		return nil, fmt.Errorf("a list of %d bytes, longer than %d", len(s), maxListLen)
	}
	work := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := listID(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = listID(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("range %q runs backwards", part)
			}
		}
		if work += b - a + 1; work > maxListWork {
			return nil, fmt.Errorf("the list names more than %d CPUs or nodes", maxListWork)
		}
		for i := a; i <= b; i++ {
			out[i] = true
		}
	}
	return out, nil
}

func listID(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%q is not a number (a list looks like 0-3,8)", s)
	}
	if n >= maxListID {
		return 0, fmt.Errorf("%d is beyond %d", n, maxListID-1)
	}
	return n, nil
}

// FormatList writes a set as a cpuset list, "0-3,8".
func FormatList(set map[int]bool) string {
	ids := make([]int, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	var parts []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(ids[i]))
		} else {
			parts = append(parts, strconv.Itoa(ids[i])+"-"+strconv.Itoa(ids[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
