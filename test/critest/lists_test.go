package critest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	in := "# comment\n\n\\[k8s\\.io\\] AppArmor  # no AppArmor here\nexec with tty  # issue 6 streaming\n"
	got, err := ParseList(strings.NewReader(in), "x.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Pattern != `\[k8s\.io\] AppArmor` || got[0].Reason != "no AppArmor here" || got[1].Line != 4 {
		t.Fatalf("got %+v", got)
	}
	if !got[0].Matches("CRI validation [k8s.io] AppArmor runtime should x") || got[0].Matches("CRI validation [k8s.io] NRI x") {
		t.Error("AppArmor entry matches the wrong specs")
	}
	if args := SkipArgs(got); len(args) != 2 || args[1] != "--ginkgo.skip=exec with tty" {
		t.Errorf("SkipArgs = %q", args)
	}
	for _, bad := range []string{"no reason here\n", "pattern  # \n", "([  # unbalanced\n"} {
		if _, err := ParseList(strings.NewReader(bad), "bad.txt"); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// TestListsMatchSpecs checks skip.txt and pending.txt against the specs
// critest really has (a dry run takes milliseconds): every line parses, has
// a reason, and every pending line selects at least one spec, so a typo or
// a renamed spec cannot silently skip nothing.
func TestListsMatchSpecs(t *testing.T) {
	var lists [][]Entry
	for _, f := range []string{"skip.txt", "pending.txt"} {
		l, err := ReadList(f)
		if err != nil {
			t.Fatal(err)
		}
		lists = append(lists, l)
	}
	bin := os.Getenv("BERTH_CRITEST_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("critest"); err != nil {
			t.Skip("critest not installed (make deps)")
		}
	}
	report := filepath.Join(t.TempDir(), "dry.json")
	if out, err := exec.Command(bin, "--ginkgo.dry-run", "--ginkgo.no-color", "--ginkgo.json-report="+report).CombinedOutput(); err != nil {
		t.Fatalf("critest dry run: %v\n%s", err, out)
	}
	r, err := ReadReport(report)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Counts(); c.Specs < 100 {
		t.Fatalf("dry run lists %d specs", c.Specs)
	}
	for i, l := range lists {
		for _, e := range l {
			n := 0
			for _, s := range r.Specs {
				if s.Kind == "It" && e.Matches(s.FullText) {
					n++
				}
			}
			switch {
			case n == 0 && i == 0:
				// critest lists SELinux specs only where SELinux is on.
				t.Logf("%s:%d %q matches no critest spec", "skip.txt", e.Line, e.Pattern)
			case n == 0:
				t.Errorf("pending.txt:%d %q matches no critest spec", e.Line, e.Pattern)
			}
		}
	}
}
