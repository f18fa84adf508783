package critest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Spec is one spec of a Ginkgo JSON report (--ginkgo.json-report).
type Spec struct {
	Text     string // containers and leaf, as critest prints it
	FullText string // with the suite description in front, as --ginkgo.skip sees it
	Kind     string // It, or BeforeSuite/AfterSuite/... for suite-level nodes
	State    string // passed, skipped, pending, failed, panicked, timedout, interrupted, aborted
	Message  string // failure message
	Where    string // file:line of the failure
	RunTime  time.Duration
}

// Failed reports whether the spec counts as a failure.
func (s Spec) Failed() bool {
	switch s.State {
	case "failed", "panicked", "timedout", "interrupted", "aborted":
		return true
	}
	return false
}

type ginkgoReport struct {
	SuiteDescription string
	SuiteSucceeded   bool
	RunTime          time.Duration
	SpecReports      []struct {
		ContainerHierarchyTexts []string
		LeafNodeType            string
		LeafNodeText            string
		State                   string
		RunTime                 time.Duration
		Failure                 struct {
			Message  string
			Location struct {
				FileName   string
				LineNumber int
			}
		}
	}
}

// Report is what one critest run did.
type Report struct {
	Succeeded bool
	RunTime   time.Duration
	Specs     []Spec
}

// ReadReport reads a Ginkgo JSON report.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var suites []ginkgoReport
	if err := json.Unmarshal(b, &suites); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if len(suites) == 0 {
		return nil, fmt.Errorf("%s: no suite", path)
	}
	r := &Report{Succeeded: true}
	for _, s := range suites {
		r.Succeeded = r.Succeeded && s.SuiteSucceeded
		r.RunTime += s.RunTime
		for _, sr := range s.SpecReports {
			text := strings.Join(append(append([]string{}, sr.ContainerHierarchyTexts...), sr.LeafNodeText), " ")
			if sr.LeafNodeType != "It" {
				text = "[" + sr.LeafNodeType + "] " + text
			}
			spec := Spec{
				Text:     strings.TrimSpace(text),
				FullText: s.SuiteDescription + " " + strings.Join(append(append([]string{}, sr.ContainerHierarchyTexts...), sr.LeafNodeText), " "),
				Kind:     sr.LeafNodeType,
				State:    sr.State,
				Message:  sr.Failure.Message,
				RunTime:  sr.RunTime,
			}
			if f := sr.Failure.Location.FileName; f != "" {
				spec.Where = fmt.Sprintf("%s:%d", filepath.Base(f), sr.Failure.Location.LineNumber)
			}
			r.Specs = append(r.Specs, spec)
		}
	}
	return r, nil
}

// Counts are the outcomes of the specs (Its); a failing suite-level node
// (BeforeSuite etc.) counts as failed too.
type Counts struct {
	Specs, Passed, Failed, Skipped, Pending int
}

func (r *Report) Counts() Counts {
	var c Counts
	for _, s := range r.Specs {
		if s.Kind != "It" {
			if s.Failed() {
				c.Failed++
			}
			continue
		}
		c.Specs++
		switch {
		case s.State == "passed":
			c.Passed++
		case s.State == "skipped":
			c.Skipped++
		case s.State == "pending":
			c.Pending++
		case s.Failed():
			c.Failed++
		}
	}
	return c
}

// Failures are the failed specs and suite nodes, in report order.
func (r *Report) Failures() []Spec {
	var out []Spec
	for _, s := range r.Specs {
		if s.Failed() {
			out = append(out, s)
		}
	}
	return out
}

// Summary is the closing text: counts, then each failure in one line.
func (r *Report) Summary() string {
	c := r.Counts()
	var b strings.Builder
	fmt.Fprintf(&b, "critest: %d passed, %d failed, %d skipped of %d specs in %s\n",
		c.Passed, c.Failed, c.Skipped+c.Pending, c.Specs, r.RunTime.Round(time.Second))
	if skips := r.SelfSkips(); len(skips) > 0 {
		b.WriteString("skipped by critest itself (berth does not offer the feature):\n")
		for _, g := range skips {
			fmt.Fprintf(&b, "  %d× %s\n", len(g.Specs), g.Cause)
		}
	}
	if c.Failed == 0 {
		return b.String()
	}
	b.WriteString("failed specs by cause:\n")
	for _, g := range r.Causes() {
		fmt.Fprintf(&b, "  %d× %s\n", len(g.Specs), g.Cause)
		for _, s := range g.Specs {
			fmt.Fprintf(&b, "      FAIL %s\n", s)
		}
	}
	return b.String()
}

// Stale are the entries of a list under which no spec failed even though
// the list did not skip them, i.e. lines of pending.txt to remove after a
// run that did not skip pending.txt. An entry that matched no spec at all
// is stale too (typo or renamed spec).
func (r *Report) Stale(entries []Entry) []Entry {
	var out []Entry
	for _, e := range entries {
		failed := false
		for _, s := range r.Specs {
			if s.Kind == "It" && s.Failed() && e.Matches(s.FullText) {
				failed = true
				break
			}
		}
		if !failed {
			out = append(out, e)
		}
	}
	return out
}

// Uncovered are the failed specs no entry matches: in a run without the
// pending list skipped, the specs that regressed or are newly failing.
func (r *Report) Uncovered(entries []Entry) []Spec {
	var out []Spec
	for _, s := range r.Failures() {
		covered := false
		for _, e := range entries {
			if e.Matches(s.FullText) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Text < out[j].Text })
	return out
}

var (
	rpcError = regexp.MustCompile(`rpc error: code = \w+ desc = [^{]*`)
	address  = regexp.MustCompile(`0x[0-9a-f]+|\b[0-9a-f]{64}\b|\b[0-9a-f]{12,}\b|\b[0-9]{4,}\b`)
)

// Cause is a failure message cut to what tells failures apart: the text
// before a Gomega object dump plus the gRPC status in it, without pointers
// and IDs, so that specs failing the same way share a cause.
func Cause(msg string) string {
	s := strings.Join(strings.Fields(msg), " ")
	if i := strings.Index(s, " <"); i >= 0 {
		head := strings.TrimSuffix(s[:i], ":")
		if m := rpcError.FindString(s); m != "" {
			s = head + ": " + strings.TrimSpace(m)
		} else if len(s) > i+200 {
			s = s[:i+200]
		}
	}
	return OneLine(address.ReplaceAllString(s, "…"), 240)
}

// Causes groups the failures by Cause, most frequent first.
func (r *Report) Causes() []CauseGroup {
	idx := map[string]int{}
	var out []CauseGroup
	for _, s := range r.Failures() {
		c := Cause(s.Message)
		i, ok := idx[c]
		if !ok {
			i = len(out)
			idx[c] = i
			out = append(out, CauseGroup{Cause: c})
		}
		text := s.Text
		if s.Where != "" {
			text += " (" + s.Where + ")"
		}
		out[i].Specs = append(out[i].Specs, text)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Specs) > len(out[j].Specs) })
	return out
}

// SelfSkips groups the specs critest skipped on its own, after asking
// the runtime what it supports (the Skip message says why), by message.
// Specs skipped by --ginkgo.skip or for want of a flag have no message.
func (r *Report) SelfSkips() []CauseGroup {
	idx := map[string]int{}
	var out []CauseGroup
	for _, s := range r.Specs {
		if s.Kind != "It" || s.State != "skipped" || strings.TrimSpace(s.Message) == "" {
			continue
		}
		c := Cause(s.Message)
		i, ok := idx[c]
		if !ok {
			i = len(out)
			idx[c] = i
			out = append(out, CauseGroup{Cause: c})
		}
		out[i].Specs = append(out[i].Specs, s.Text)
	}
	return out
}

// CauseGroup is the specs that failed for one cause.
type CauseGroup struct {
	Cause string
	Specs []string
}

// OneLine squeezes a failure message into one line of at most n runes.
func OneLine(msg string, n int) string {
	s := strings.Join(strings.Fields(msg), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "..."
	}
	return s
}
