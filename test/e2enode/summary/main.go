// Command summary reads ginkgo's JSON report of a node e2e run and prints
// "N passed, N failed, N skipped", where skipped counts the specs of the
// selected set (focus, less the default skips) that did not run: skipped by
// the suite itself at run time or by a line of test/e2enode/skip.txt. With
// -v it lists the failed specs and their failure messages.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
)

type report struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
		Failure                 struct {
			Message  string
			Location struct {
				FileName   string
				LineNumber int
			}
		}
	}
}

func main() {
	focus := flag.String("focus", `\[NodeConformance\]`, "the run's focus")
	skip := flag.String("skip", `\[Flaky\]|\[Slow\]|\[Serial\]`, "the run's default skip (not the skip file)")
	verbose := flag.Bool("v", false, "list the failed specs")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: summary [-focus RE] [-skip RE] [-v] report.json")
		os.Exit(2)
	}
	fre, err := regexp.Compile(*focus)
	if err != nil {
		fail(err)
	}
	var sre *regexp.Regexp
	if *skip != "" {
		if sre, err = regexp.Compile(*skip); err != nil {
			fail(err)
		}
	}
	b, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	var reports []report
	if err := json.Unmarshal(b, &reports); err != nil {
		fail(fmt.Errorf("parse %s: %w", flag.Arg(0), err))
	}
	c := count(reports, fre, sre)
	if *verbose {
		for _, f := range c.failures {
			fmt.Println(f)
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", c.passed, c.failed, c.skipped)
}

type counts struct {
	passed, failed, skipped int
	failures                []string
}

// count tallies the specs of the reports: a skipped spec counts only when
// the run selected it (focus matches, the default skip does not).
func count(reports []report, fre, sre *regexp.Regexp) counts {
	var c counts
	for _, r := range reports {
		for _, s := range r.SpecReports {
			text := strings.TrimSpace(strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " "))
			switch s.State {
			case "passed":
				if s.LeafNodeType == "It" {
					c.passed++
				}
			case "skipped", "pending":
				if s.LeafNodeType == "It" && fre.MatchString(text) && (sre == nil || !sre.MatchString(text)) {
					c.skipped++
				}
			default: // failed, panicked, interrupted, aborted, timedout
				c.failed++
				if s.LeafNodeType != "It" {
					text = s.LeafNodeType + " " + text
				}
				c.failures = append(c.failures, fmt.Sprintf("%s: %s\n    %s:%d: %s", s.State, text,
					s.Failure.Location.FileName, s.Failure.Location.LineNumber, firstLine(s.Failure.Message)))
			}
		}
	}
	return c
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "summary:", err)
	os.Exit(1)
}
