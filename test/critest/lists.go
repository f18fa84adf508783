// Package critest runs cri-tools' conformance suite (critest) against a
// berthd on temp dirs and summarizes the outcome. Which specs it leaves out
// is written in two lists next to this file: skip.txt (what this kind of
// machine cannot run, for good) and pending.txt (what berth does not pass
// YET, each line naming the issue that will fix it).
package critest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Entry is one line of a spec list: a regexp Ginkgo matches against the
// spec's full text (suite description, containers and leaf joined by
// spaces, unanchored, as --ginkgo.skip does) and why it is there.
type Entry struct {
	Pattern string
	Reason  string
	Line    int

	re *regexp.Regexp
}

// Matches reports whether the entry selects a spec of the given full text.
func (e Entry) Matches(fullText string) bool { return e.re.MatchString(fullText) }

// ReadList reads a spec list file (see ParseList).
func ReadList(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseList(f, path)
}

// ParseList parses "REGEXP  # reason" lines; blank lines and lines starting
// with # are comments. A line without a reason, or whose regexp does not
// compile, is an error: an unexplained skip is how suites rot.
func ParseList(r io.Reader, name string) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.Index(line, " #")
		if i < 0 {
			return nil, fmt.Errorf("%s:%d: no reason (want `REGEXP  # reason`)", name, n)
		}
		pattern := strings.TrimSpace(line[:i])
		reason := strings.TrimSpace(line[i+2:])
		if reason == "" {
			return nil, fmt.Errorf("%s:%d: empty reason", name, n)
		}
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, Entry{Pattern: pattern, Reason: reason, Line: n, re: re})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}

// SkipArgs are the critest flags that skip every entry.
func SkipArgs(entries []Entry) []string {
	var args []string
	for _, e := range entries {
		args = append(args, "--ginkgo.skip="+e.Pattern)
	}
	return args
}
