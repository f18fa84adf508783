package critest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleReport = `[{"SuiteDescription":"CRI validation","SuiteSucceeded":false,"RunTime":61000000000,"SpecReports":[
{"LeafNodeType":"BeforeSuite","State":"passed"},
{"ContainerHierarchyTexts":["[k8s.io] Streaming","runtime"],"LeafNodeType":"It","LeafNodeText":"should support attach","State":"failed",
 "Failure":{"Message":"Expected\n    <*status.Error | 0x6ed386a8328>: rpc error: code = Unimplemented desc = method Attach not implemented { s: { s: {}}}\nto be nil","Location":{"FileName":"/x/pkg/validate/streaming.go","LineNumber":42}}},
{"ContainerHierarchyTexts":["[k8s.io] Runtime info"],"LeafNodeType":"It","LeafNodeText":"should return version info","State":"passed"},
{"ContainerHierarchyTexts":["[k8s.io] AppArmor"],"LeafNodeType":"It","LeafNodeText":"should x","State":"skipped"},
{"ContainerHierarchyTexts":["[k8s.io] Metrics"],"LeafNodeType":"It","LeafNodeText":"should y","State":"skipped","Failure":{"Message":"CRI Metrics endpoints not supported by this runtime version"}},
{"ContainerHierarchyTexts":["[k8s.io] Container"],"LeafNodeType":"It","LeafNodeText":"should time out","State":"timedout"},
{"LeafNodeType":"AfterSuite","State":"panicked","Failure":{"Message":"boom"}}]}]`

func TestReport(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(p, []byte(sampleReport), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadReport(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Counts(); c != (Counts{Specs: 5, Passed: 1, Failed: 3, Skipped: 2}) {
		t.Errorf("counts %+v", c)
	}
	if r.Succeeded {
		t.Error("suite succeeded")
	}
	sum := r.Summary()
	for _, want := range []string{
		"critest: 1 passed, 3 failed, 2 skipped of 5 specs in 1m1s",
		"skipped by critest itself (berth does not offer the feature):\n  1× CRI Metrics endpoints not supported by this runtime version\n",
		"1× Expected: rpc error: code = Unimplemented desc = method Attach not implemented\n      FAIL [k8s.io] Streaming runtime should support attach (streaming.go:42)\n",
		"FAIL [AfterSuite]",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	pending, err := ParseList(strings.NewReader("Streaming  # issue 6\nRuntime info  # stale\n"), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Stale(pending); len(st) != 1 || st[0].Pattern != "Runtime info" {
		t.Errorf("stale %+v", st)
	}
	if un := r.Uncovered(pending); len(un) != 2 || un[0].Text != "[AfterSuite]" || un[1].Text != "[k8s.io] Container should time out" {
		t.Errorf("uncovered %+v", un)
	}
	if got := Cause("failed to create container Unexpected error: <*status.Error | 0x6ed386a8328>: rpc error: code = NotFound desc = image 0123456789abcdef0 not found { s: {"); got != "failed to create container Unexpected error: rpc error: code = NotFound desc = image … not found" {
		t.Errorf("Cause = %q", got)
	}
	if got := OneLine("a\n  b\tc", 3); got != "a b..." {
		t.Errorf("OneLine = %q", got)
	}
}
