package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.95, 7 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 0.5, 3 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 0, 1 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 1, 5 * time.Millisecond},
		// nearest rank of 19*0.95 = 18.05 -> index 18, the 19th of 20
		{ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 0.95, 19 * time.Millisecond},
	} {
		in := append([]time.Duration(nil), tc.in...)
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("percentile sorted its input: %v", tc.in)
			}
		}
	}
}

const rollup = `55c22cd4c000-7ffeff8e2000 ---p 00000000 00:00 0                          [rollup]
Rss:                1612 kB
Pss:                 186 kB
Pss_Dirty:           108 kB
Shared_Clean:       1464 kB
Shared_Dirty:          0 kB
Private_Clean:        40 kB
Private_Dirty:       108 kB
Referenced:         1612 kB
Private_Hugetlb:       4 kB
Swap:                  0 kB
`

func TestParseSmapsRollup(t *testing.T) {
	m, err := parseSmapsRollup(strings.NewReader(rollup))
	if err != nil {
		t.Fatal(err)
	}
	// USS counts private clean, dirty and hugetlb pages, not Pss_Dirty.
	if want := (memUsage{RSS: 1612, PSS: 186, USS: 152}); m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if _, err := parseSmapsRollup(strings.NewReader("garbage\n")); err == nil {
		t.Fatal("no error for a file without Rss")
	}
	var sum memUsage
	sum.add(m)
	sum.add(m)
	if sum.USS != 304 || sum.RSS != 3224 || sum.PSS != 372 {
		t.Fatalf("add: %+v", sum)
	}
}

func TestParseProc(t *testing.T) {
	n, err := parseThreads("Name:\tberthd\nState:\tS (sleeping)\nThreads:\t17\nSigQ:\t0/95\n")
	if err != nil || n != 17 {
		t.Fatalf("parseThreads = %d, %v", n, err)
	}
	if _, err := parseThreads("Name:\tx\n"); err == nil {
		t.Fatal("parseThreads: no error without a Threads line")
	}
	l, err := parseLoad1("12.34 8.00 4.10 3/1021 999\n")
	if err != nil || l != 12.34 {
		t.Fatalf("parseLoad1 = %v, %v", l, err)
	}
	if _, err := parseLoad1(""); err == nil {
		t.Fatal("parseLoad1: no error for empty input")
	}
	prom := "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 42\ngo_goroutines_other 1\nberth_pods{state=\"ready\"} 3\n"
	if v, ok := parsePromGauge(prom, "go_goroutines"); !ok || v != 42 {
		t.Fatalf("parsePromGauge = %v, %v", v, ok)
	}
	if _, ok := parsePromGauge(prom, "go_threads"); ok {
		t.Fatal("parsePromGauge found a missing gauge")
	}
}

func TestDescribeLoad(t *testing.T) {
	if got := describeLoad(nil); got != "?" {
		t.Errorf("no samples: %q", got)
	}
	if got := describeLoad([]float64{3, 3.01}); got != "3.0" {
		t.Errorf("steady: %q", got)
	}
	if got := describeLoad([]float64{10, 12, 14}); got != "12.0 (10.0-14.0)" {
		t.Errorf("varying: %q", got)
	}
}

func TestTableWrite(t *testing.T) {
	var tb table
	tb.add(row{bench: "scale", measure: "ListPodSandbox", n: "250", value: "p50 1ms", goal: "≤ 1.2×"})
	tb.add(row{bench: "pods", measure: "RunPodSandbox", n: "30", value: "p50 40ms", load: "2.0"})
	tb.setLoad("scale", "9.5")
	tb.setLoad("pods", "7.0") // has its own: kept
	var b bytes.Buffer
	tb.write(&b)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header, rule and 2 rows, got:\n%s", b.String())
	}
	if !strings.HasPrefix(lines[0], "benchmark  measure         n    value     goal    load") {
		t.Errorf("header %q", lines[0])
	}
	if !strings.HasSuffix(lines[2], "9.5") || !strings.HasSuffix(lines[3], "2.0") {
		t.Errorf("loads:\n%s", b.String())
	}
	// Columns line up: "n" starts at the same offset in every row.
	off := strings.Index(lines[0], " n ") + 1
	if lines[2][off:off+3] != "250" || lines[3][off:off+2] != "30" {
		t.Errorf("columns not aligned:\n%s", b.String())
	}
	var empty bytes.Buffer
	(&table{}).write(&empty)
	if empty.Len() != 0 {
		t.Errorf("empty table printed %q", empty.String())
	}
}

func TestRatioAndRound(t *testing.T) {
	if got := ratio(12*time.Millisecond, 10*time.Millisecond); got != "1.20×" {
		t.Errorf("ratio = %q", got)
	}
	if got := ratio(time.Millisecond, 0); got != "-" {
		t.Errorf("ratio by 0 = %q", got)
	}
	if got := roundDur(12345678 * time.Nanosecond); got != 12350*time.Microsecond {
		t.Errorf("roundDur = %v", got)
	}
	if got := mb(1536); got != "1.50 MB" {
		t.Errorf("mb = %q", got)
	}
}

func TestFlagValueAndCounts(t *testing.T) {
	args := []string{"./bin/berthd", "--listen", "unix:///x.sock", "--state=/tmp/s", "--root", "/tmp/r", "--state-dir"}
	for name, want := range map[string]string{"--listen": "unix:///x.sock", "--state": "/tmp/s", "--root": "/tmp/r", "--state-dir": "", "--config": ""} {
		if got := flagValue(args, name); got != want {
			t.Errorf("flagValue(%s) = %q, want %q", name, got, want)
		}
	}
	got, err := parseCounts(" 10, 1,3 ,")
	if err != nil || len(got) != 3 || got[0] != 1 || got[1] != 3 || got[2] != 10 {
		t.Fatalf("parseCounts = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "x", "5,-1"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q): no error", bad)
		}
	}
}
