package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The pure parts of the benchmarks: percentiles, /proc parsing, the load
// meter and the results table make bench ends with.

// percentile is the q-quantile (0..1) of ds by the nearest rank; ds need
// not be sorted and is left as it was.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s)-1) + 0.5)
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// memUsage is one process's memory from /proc/<pid>/smaps_rollup, in KiB.
// USS (the private pages, clean and dirty) is what the process alone costs:
// what ending it frees.
type memUsage struct {
	RSS, PSS, USS uint64
}

func (m *memUsage) add(o memUsage) {
	m.RSS += o.RSS
	m.PSS += o.PSS
	m.USS += o.USS
}

// parseSmapsRollup reads the Rss, Pss and Private_* lines of an
// smaps_rollup file (values in kB).
func parseSmapsRollup(r io.Reader) (memUsage, error) {
	var m memUsage
	sc := bufio.NewScanner(r)
	seen := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.RSS, seen = v, true
		case "Pss:":
			m.PSS = v
		case "Private_Clean:", "Private_Dirty:", "Private_Hugetlb:":
			m.USS += v
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !seen {
		return m, fmt.Errorf("no Rss line in smaps_rollup")
	}
	return m, nil
}

func readMemUsage(pid int) (memUsage, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memUsage{}, err
	}
	defer f.Close()
	return parseSmapsRollup(f)
}

// parseThreads is the Threads: line of /proc/<pid>/status.
func parseThreads(status string) (int, error) {
	for _, l := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(l, "Threads:"); ok {
			return strconv.Atoi(strings.TrimSpace(rest))
		}
	}
	return 0, fmt.Errorf("no Threads line")
}

// parseLoad1 is the 1-minute load average of /proc/loadavg.
func parseLoad1(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty loadavg")
	}
	return strconv.ParseFloat(f[0], 64)
}

// parsePromGauge finds an unlabelled sample (name value) in Prometheus
// text exposition.
func parsePromGauge(text, name string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// loadMeter samples the 1-minute load average once a second while a
// measurement runs, so every figure can say how busy the machine was.
type loadMeter struct {
	mu      sync.Mutex
	samples []float64
	done    chan struct{}
	stopped sync.WaitGroup
}

func startLoad() *loadMeter {
	l := &loadMeter{done: make(chan struct{})}
	l.sample()
	l.stopped.Add(1)
	go func() {
		defer l.stopped.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
				l.sample()
			}
		}
	}()
	return l
}

func (l *loadMeter) sample() {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	if v, err := parseLoad1(string(b)); err == nil {
		l.mu.Lock()
		l.samples = append(l.samples, v)
		l.mu.Unlock()
	}
}

// stop ends the sampling and describes the load seen.
func (l *loadMeter) stop() string {
	close(l.done)
	l.stopped.Wait()
	l.sample()
	return describeLoad(l.samples)
}

// describeLoad is "mean (min-max)" of load samples.
func describeLoad(s []float64) string {
	if len(s) == 0 {
		return "?"
	}
	lo, hi, sum := s[0], s[0], 0.0
	for _, v := range s {
		lo, hi, sum = min(lo, v), max(hi, v), sum+v
	}
	mean := sum / float64(len(s))
	if hi-lo < 0.05 {
		return fmt.Sprintf("%.1f", mean)
	}
	return fmt.Sprintf("%.1f (%.1f-%.1f)", mean, lo, hi)
}

// row is one line of the results table.
type row struct {
	bench, measure, n, value, goal, load string
}

// table collects the figures of every benchmark of a run.
type table struct {
	mu   sync.Mutex
	rows []row
}

var results table

func (t *table) add(r row) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows = append(t.rows, r)
}

// setLoad gives rows of bench that have no load of their own this one.
func (t *table) setLoad(bench, load string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.rows {
		if t.rows[i].bench == bench && t.rows[i].load == "" {
			t.rows[i].load = load
		}
	}
}

// write prints the rows as an aligned text table.
func (t *table) write(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.rows) == 0 {
		return
	}
	cells := [][]string{{"benchmark", "measure", "n", "value", "goal", "load"}}
	for _, r := range t.rows {
		cells = append(cells, []string{r.bench, r.measure, r.n, r.value, r.goal, r.load})
	}
	width := make([]int, len(cells[0]))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	for k, c := range cells {
		var b strings.Builder
		for i, s := range c {
			if i == len(c)-1 {
				b.WriteString(s)
				break
			}
			b.WriteString(s)
			b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(s)+2))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if k == 0 {
			total := len(c) - 1
			for _, wd := range width {
				total += wd + 1
			}
			fmt.Fprintln(w, strings.Repeat("-", min(total, 160)))
		}
	}
}

// latency formats p50 and p95 of ds.
func latency(ds []time.Duration) string {
	return fmt.Sprintf("p50 %v  p95 %v", roundDur(percentile(ds, 0.5)), roundDur(percentile(ds, 0.95)))
}

// roundDur keeps three significant digits or so.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// ratio is a/b as "1.07×", or "-" without b.
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func mb(kib uint64) string { return fmt.Sprintf("%.2f MB", float64(kib)/1024) }
