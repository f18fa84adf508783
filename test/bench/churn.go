package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Pods run and removed continuously at a steady rate, with berthd's and
// the shims' memory, fds, threads (and berthd's goroutines) sampled: after
// the first cycle nothing may grow, and once the last pod is gone berthd
// must be back where it was before the churn.
func init() {
	register("churn", benchChurn)
}

var (
	churnDuration = flag.Duration("churn-duration", envDuration("BENCH_CHURN_DURATION", 30*time.Minute), "churn benchmark: how long pods are run and removed (env BENCH_CHURN_DURATION)")
	churnRate     = flag.Float64("churn-rate", 5, "churn benchmark: pods run (and as many removed) per second")
	churnLive     = flag.Int("churn-live", 20, "churn benchmark: pods alive at a time (each lives churn-live/churn-rate seconds)")
	churnEvery    = flag.Duration("churn-sample", 10*time.Second, "churn benchmark: time between samples")
)

func envDuration(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(envOr(k, "")); err == nil {
		return d
	}
	return def
}

// churnSample is one look at the processes during the churn.
type churnSample struct {
	at     time.Duration
	live   int
	berthd procStats
	shims  int
	shim   procStats // the mean of the shims alive
	shimMx int       // the most threads of any shim
	heap   float64   // berthd's heap in use (bytes), -1 unknown
	// pins are the pods with namespaces pinned (dirs under the state's
	// ns/): the pods alive and those whose network is not released yet.
	pins int
	load float64 // the 1-minute load average
}

func benchChurn(e *env) error {
	if *churnRate <= 0 || *churnLive < 1 {
		return fmt.Errorf("-churn-rate and -churn-live must be positive")
	}
	set, err := newPodSet(e, strconv.FormatInt(time.Now().UnixNano(), 36)+"ch")
	if err != nil {
		return err
	}
	defer set.remove()
	bpid, _ := berthdPid()
	state := ""
	if bpid > 0 {
		state = flagValue(cmdline(bpid), "--state")
	}
	sample := func(start time.Time, live int) churnSample {
		s := churnSample{at: time.Since(start), live: live, berthd: procStats{goroutines: -1}, heap: -1, pins: -1, load: loadavg()}
		if bpid > 0 {
			g := berthdGauges(e.ctx, "go_goroutines", "go_memstats_heap_inuse_bytes")
			s.berthd, _ = readProcStats(bpid)
			s.berthd.goroutines, s.heap = int(g[0]), g[1]
		}
		if state == "" {
			return s
		}
		if ents, err := os.ReadDir(filepath.Join(state, "ns")); err == nil {
			s.pins = len(ents)
		}
		for _, pid := range shimsOf(state) {
			p, err := readProcStats(pid)
			if err != nil {
				continue
			}
			s.shims++
			s.shim.mem.add(p.mem)
			s.shim.fds += p.fds
			s.shim.threads += p.threads
			s.shimMx = max(s.shimMx, p.threads)
		}
		if s.shims > 0 {
			n := uint64(s.shims)
			s.shim.mem = memUsage{RSS: s.shim.mem.RSS / n, PSS: s.shim.mem.PSS / n, USS: s.shim.mem.USS / n}
			s.shim.fds /= s.shims
			s.shim.threads /= s.shims
		}
		return s
	}

	idleBefore := sample(time.Now(), 0)
	lifetime := time.Duration(float64(*churnLive) / *churnRate * float64(time.Second))
	interval := time.Duration(float64(time.Second) / *churnRate)
	times := &callTimes{}
	var (
		wg                            sync.WaitGroup
		live, made, removed, failures atomic.Int64
		firstCycle                    atomic.Int64 // when the first churn-live pods were all removed, in ns since start
		firstErr                      error
		errOnce                       sync.Once
	)
	// A pod whose run takes longer than its turn is not waited for, but a
	// node that cannot keep the rate gets no pile of calls: a few more than
	// the planned pods at most are in flight, the turns beyond are skipped
	// (and counted).
	slots := make(chan struct{}, *churnLive+5)
	start := time.Now()
	load := startLoad()
	var samples []churnSample
	tick := time.NewTicker(interval)
	sampleTick := time.NewTicker(*churnEvery)
	skipped := 0
	for running := true; running; {
		select {
		case <-e.ctx.Done():
			running = false
		case <-sampleTick.C:
			samples = append(samples, sample(start, int(live.Load())))
			s := samples[len(samples)-1]
			fmt.Printf("   %6s load %.1f live %-3d made %d | berthd RSS %s heap %s fds %d threads %d goroutines %d | %d shims, each RSS %s USS %s fds %d threads %d | netns pins %d\n",
				s.at.Round(time.Second), s.load, s.live, made.Load(), mb(s.berthd.mem.RSS), mbf(s.heap), s.berthd.fds, s.berthd.threads, s.berthd.goroutines,
				s.shims, mb(s.shim.mem.RSS), mb(s.shim.mem.USS), s.shim.fds, s.shim.threads, s.pins)
		case <-tick.C:
			if time.Since(start) >= *churnDuration {
				running = false
				break
			}
			select {
			case slots <- struct{}{}:
			default:
				skipped++
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				p, err := set.addPod(e.ctx, 1, times)
				if err == nil {
					live.Add(1)
					made.Add(1)
					time.Sleep(lifetime)
					live.Add(-1)
				}
				if p.id != "" {
					if rmErr := set.removePod(e.ctx, p.id, times); err == nil {
						err = rmErr
					}
					if removed.Add(1) == int64(*churnLive) {
						firstCycle.Store(int64(time.Since(start)))
					}
				}
				if err != nil {
					failures.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}()
		}
	}
	tick.Stop()
	sampleTick.Stop()
	wg.Wait()
	elapsed := time.Since(start)
	l := load.stop()
	// The last pod is gone: berthd settles (idle connections, timers) and
	// releases the networks still pending (up to a minute).
	time.Sleep(5 * time.Second)
	idleAfter := sample(start, 0)
	for end := time.Now().Add(time.Minute); idleAfter.pins > 0 && time.Now().Before(end); {
		time.Sleep(time.Second)
		idleAfter = sample(start, 0)
	}

	n := fmt.Sprintf("%d pods", made.Load())
	fmt.Printf("   %d pods run and removed in %v (%.2f/s; %d turns skipped, %d failed)\n", made.Load(), elapsed.Round(time.Second),
		float64(made.Load())/elapsed.Seconds(), skipped, failures.Load())
	results.add(row{bench: "churn", measure: "pods run and removed", n: n, value: fmt.Sprintf("%.2f/s over %v, %d turns skipped, %d failed",
		float64(made.Load())/elapsed.Seconds(), elapsed.Round(time.Second), skipped, failures.Load()), goal: fmt.Sprintf("%.1f/s", *churnRate), load: l})
	for _, c := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopPodSandbox", "RemovePodSandbox"} {
		if ds := times.get(c); len(ds) > 0 {
			results.add(row{bench: "churn", measure: c + " under churn", n: strconv.Itoa(len(ds)), value: latency(ds), load: l})
		}
	}
	churnRows(samples, time.Duration(firstCycle.Load()), n, l)
	if idleAfter.pins >= 0 {
		results.add(row{bench: "churn", measure: "netns pins left after the last pod", n: n,
			value: fmt.Sprintf("%d (%v after the churn ended)", idleAfter.pins, (idleAfter.at - elapsed).Round(time.Second)), goal: "0", load: l})
	}
	if bpid > 0 {
		g := func(v int) string {
			if v < 0 {
				return "?"
			}
			return strconv.Itoa(v)
		}
		results.add(row{bench: "churn", measure: "berthd idle: before churn → after the last pod", n: n,
			value: fmt.Sprintf("RSS %s→%s  USS %s→%s  fds %d→%d  threads %d→%d  goroutines %s→%s",
				mb(idleBefore.berthd.mem.RSS), mb(idleAfter.berthd.mem.RSS), mb(idleBefore.berthd.mem.USS), mb(idleAfter.berthd.mem.USS),
				idleBefore.berthd.fds, idleAfter.berthd.fds, idleBefore.berthd.threads, idleAfter.berthd.threads,
				g(idleBefore.berthd.goroutines), g(idleAfter.berthd.goroutines)),
			goal: "fds, goroutines back", load: l})
	}
	if failures.Load() > 0 {
		return fmt.Errorf("%d pods failed, the first: %w", failures.Load(), firstErr)
	}
	return nil
}

// churnRows compares the first sample after the first cycle (the first
// churn-live pods run and removed, at firstCycle) with the last one.
func churnRows(samples []churnSample, firstCycle time.Duration, n, load string) {
	var steady []churnSample
	for _, s := range samples {
		if firstCycle > 0 && s.at >= firstCycle {
			steady = append(steady, s)
		}
	}
	if len(steady) < 2 {
		results.add(row{bench: "churn", measure: "growth after the first cycle", n: n, value: "too short a run to tell (needs 2 samples after the first cycle)", load: load})
		return
	}
	first, last := steady[0], steady[len(steady)-1]
	span := fmt.Sprintf("%v→%v", first.at.Round(time.Second), last.at.Round(time.Second))
	for _, st := range []struct {
		name string
		s    churnSample
	}{{"start", samples[0]}, {"after 1st cycle", first}, {"end", last}} {
		s := st.s
		results.add(row{bench: "churn", measure: "at " + st.name, n: s.at.Round(time.Second).String(),
			value: fmt.Sprintf("berthd RSS %s heap %s fds %d threads %d goroutines %d | %d shims, each RSS %s USS %s fds %d threads %d | netns pins %d",
				mb(s.berthd.mem.RSS), mbf(s.heap), s.berthd.fds, s.berthd.threads, s.berthd.goroutines,
				s.shims, mb(s.shim.mem.RSS), mb(s.shim.mem.USS), s.shim.fds, s.shim.threads, s.pins),
			load: fmt.Sprintf("%.1f", s.load)})
	}
	slope := func(f func(churnSample) float64) float64 { return slopePer10m(steady, f) }
	results.add(row{bench: "churn", measure: "slope after the 1st cycle, per 10 min", n: span,
		value: fmt.Sprintf("berthd RSS %+.2f MB heap %+.2f MB fds %+.1f threads %+.1f goroutines %+.1f | shim RSS %+.2f MB | netns pins %+.1f",
			slope(func(s churnSample) float64 { return float64(s.berthd.mem.RSS) / 1024 }),
			slope(func(s churnSample) float64 { return s.heap / (1 << 20) }),
			slope(func(s churnSample) float64 { return float64(s.berthd.fds) }),
			slope(func(s churnSample) float64 { return float64(s.berthd.threads) }),
			slope(func(s churnSample) float64 { return float64(s.berthd.goroutines) }),
			slope(func(s churnSample) float64 { return float64(s.shim.mem.RSS) / 1024 }),
			slope(func(s churnSample) float64 { return float64(s.pins) })),
		goal: "≈0", load: load})
	peak := func(f func(churnSample) int) int {
		m := 0
		for _, s := range steady {
			m = max(m, f(s))
		}
		return m
	}
	if first.berthd.threads > 0 {
		results.add(row{bench: "churn", measure: "berthd after 1st cycle → last sample (max)", n: span,
			value: fmt.Sprintf("RSS %s→%s  fds %d→%d (%d)  threads %d→%d (%d)  goroutines %d→%d (%d)",
				mb(first.berthd.mem.RSS), mb(last.berthd.mem.RSS),
				first.berthd.fds, last.berthd.fds, peak(func(s churnSample) int { return s.berthd.fds }),
				first.berthd.threads, last.berthd.threads, peak(func(s churnSample) int { return s.berthd.threads }),
				first.berthd.goroutines, last.berthd.goroutines, peak(func(s churnSample) int { return s.berthd.goroutines })),
			goal: "no growth", load: load})
	}
	if first.shims > 0 && last.shims > 0 {
		results.add(row{bench: "churn", measure: "each shim after 1st cycle → last sample", n: span,
			value: fmt.Sprintf("RSS %s→%s  USS %s→%s  fds %d→%d  threads %d→%d (max %d)",
				mb(first.shim.mem.RSS), mb(last.shim.mem.RSS), mb(first.shim.mem.USS), mb(last.shim.mem.USS),
				first.shim.fds, last.shim.fds, first.shim.threads, last.shim.threads, peak(func(s churnSample) int { return s.shimMx })),
			goal: "no growth", load: load})
	}
}

// slopePer10m is the least-squares slope of f over the samples, per ten
// minutes: the samples swing with the pods alive at each, a trend does not.
func slopePer10m(samples []churnSample, f func(churnSample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, y := s.at.Minutes()/10, f(s)
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// mbf is a size in bytes as MB, "?" when unknown (negative).
func mbf(b float64) string {
	if b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f MB", b/(1<<20))
}

// loadavg is the 1-minute load average, -1 when unknown.
func loadavg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var v float64
	if _, err := fmt.Sscan(string(b), &v); err != nil {
		return -1
	}
	return v
}
