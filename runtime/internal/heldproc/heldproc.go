// Package heldproc starts, for the tests of cgroup code, a shell that does
// nothing until it is let go: a test places it (in a cgroup) first, so
// that all of its work is charged there (cgroup v1 does not move earlier
// charges along with a process).
package heldproc

import (
	"io"
	"os/exec"
	"testing"
)

// Start runs sh -c script held before its first command, calls place
// with its pid, then lets it go. The shell is killed and reaped when the
// test ends (before the cleanups registered earlier, such as the removal
// of its cgroup, run).
func Start(t testing.TB, script string, place func(pid int) error) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read go; "+script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := place(cmd.Process.Pid); err != nil {
		t.Fatalf("place pid %d: %v", cmd.Process.Pid, err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatalf("let pid %d go: %v", cmd.Process.Pid, err)
	}
	return cmd
}
