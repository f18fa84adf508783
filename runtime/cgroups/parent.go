package cgroups

import (
	"fmt"
	"strings"
)

// CheckParent refuses a pod's cgroup parent (a request's cgroup_parent)
// that would not name one cgroup below the hierarchy's root as written: a
// ".." or "." segment (cleaned away, "/kubepods/../../x" would put the pod
// at "/x", outside the parent it names) or a NUL or newline, which no
// cgroup dir name may hold (/proc/<pid>/cgroup is read line by line). It
// is checked where the path is made, whatever checked the request before.
func CheckParent(parent string) error {
	if strings.ContainsAny(parent, "\x00\n") {
		return fmt.Errorf("cgroup parent %q holds a NUL or a newline", parent)
	}
	for _, seg := range strings.Split(parent, "/") {
		if seg == ".." || seg == "." {
			return fmt.Errorf("cgroup parent %q has a %q segment: name the cgroup itself", parent, seg)
		}
	}
	return nil
}
