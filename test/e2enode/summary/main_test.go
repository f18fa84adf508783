package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func TestCount(t *testing.T) {
	const js = `[{"SpecReports":[
	 {"ContainerHierarchyTexts":["[sig-node] Pods"],"LeafNodeText":"runs [NodeConformance]","LeafNodeType":"It","State":"passed"},
	 {"ContainerHierarchyTexts":["[sig-node] Pods"],"LeafNodeText":"restarts [NodeConformance]","LeafNodeType":"It","State":"failed",
	  "Failure":{"Message":"timed out\nmore","Location":{"FileName":"pods.go","LineNumber":7}}},
	 {"ContainerHierarchyTexts":["[sig-node] Probes"],"LeafNodeText":"by skip.txt [NodeConformance]","LeafNodeType":"It","State":"skipped"},
	 {"ContainerHierarchyTexts":["[sig-node] Probes"],"LeafNodeText":"slow [NodeConformance] [Slow]","LeafNodeType":"It","State":"skipped"},
	 {"ContainerHierarchyTexts":["[sig-node] Other"],"LeafNodeText":"not focused","LeafNodeType":"It","State":"skipped"},
	 {"LeafNodeType":"SynchronizedBeforeSuite","State":"passed"},
	 {"LeafNodeType":"ReportAfterSuite","State":"failed"}
	]}]`
	var reports []report
	if err := json.Unmarshal([]byte(js), &reports); err != nil {
		t.Fatal(err)
	}
	c := count(reports, regexp.MustCompile(`\[NodeConformance\]`), regexp.MustCompile(`\[Slow\]`))
	if c.passed != 1 || c.failed != 2 || c.skipped != 1 {
		t.Errorf("got %d passed, %d failed, %d skipped; want 1, 2, 1", c.passed, c.failed, c.skipped)
	}
	if len(c.failures) != 2 || !strings.Contains(c.failures[0], "pods.go:7: timed out") || strings.Contains(c.failures[0], "more") ||
		!strings.HasPrefix(c.failures[1], "failed: ReportAfterSuite") {
		t.Errorf("failures = %q", c.failures)
	}
}
