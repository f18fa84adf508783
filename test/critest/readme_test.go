package critest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/test/framework"
)

// dryRun counts the specs a critest run with these arguments would run
// (a dry run takes a second), and the whole suite's.
func dryRun(t *testing.T, bin string, args ...string) (run, total int) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "dry.json")
	args = append([]string{"--ginkgo.dry-run", "--ginkgo.no-color", "--ginkgo.json-report=" + report}, args...)
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("critest dry run %v: %v\n%s", args, err, out)
	}
	r, err := ReadReport(report)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Counts()
	return c.Passed, c.Specs
}

// TestReadmeCounts keeps the spec counts the README and the Makefile give
// equal to what critest runs: the whole suite, the guard (less skip.txt and
// pending.txt) and the systemd VM's focus; and critest must know its
// version (hack/install-deps.sh links it in).
func TestReadmeCounts(t *testing.T) {
	bin := os.Getenv("BERTH_CRITEST_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("critest"); err != nil {
			t.Skip("critest not installed (make deps)")
		}
	}
	if out, err := exec.Command(bin, "-version").CombinedOutput(); err != nil || !regexp.MustCompile(`critest version: \d+\.\d+`).Match(out) {
		t.Errorf("critest -version: %v %q; want its version (make deps rebuilds it with -ldflags -X .../pkg/version.Version)", err, out)
	}
	var guard []Entry
	for _, f := range []string{"skip.txt", "pending.txt"} {
		l, err := ReadList(f)
		if err != nil {
			t.Fatal(err)
		}
		guard = append(guard, l...)
	}
	guardRun, total := dryRun(t, bin, SkipArgs(guard)...)

	makefile, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CRITEST_SYSTEMD_FOCUS = (.*)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile: no CRITEST_SYSTEMD_FOCUS")
	}
	systemdRun, _ := dryRun(t, bin, append(SkipArgs(guard), "--ginkgo.focus="+string(m[1]))...)
	t.Logf("critest: %d specs, guard %d, systemd focus %d", total, guardRun, systemdRun)

	readme, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file, what string
		text       []byte
		re         string
		want       int
	}{
		{"README.md", "whole suite", readme, `suite \((\d+) specs\)`, total},
		{"README.md", "guard", readme, `(?s)less both lists\s+\((\d+) specs`, guardRun},
		{"README.md", "guard in the VM", readme, `same\s+(\d+)\s+specs`, guardRun},
		{"README.md", "systemd focus", readme, `OOM specs\s+\((\d+),`, systemdRun},
		{"Makefile", "guard in the VM", makefile, `same\s+(\d+)\s+specs`, guardRun},
		{"Makefile", "systemd focus", makefile, `OOM\s+#\s+specs in the systemd VM.*?:\s+(\d+)\s+specs`, systemdRun},
	} {
		found := regexp.MustCompile(c.re).FindAllSubmatch(c.text, -1)
		if len(found) == 0 {
			t.Errorf("%s: no %s count (%s)", c.file, c.what, c.re)
		}
		for _, f := range found {
			if n, _ := strconv.Atoi(string(f[1])); n != c.want {
				t.Errorf("%s says %d specs for the %s (%q); critest runs %d", c.file, n, c.what, strings.Join(strings.Fields(string(f[0])), " "), c.want)
			}
		}
	}
}
