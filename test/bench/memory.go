package main

import (
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The memory a node pays per pod for the runtime's per-pod processes
// (berth-shim; containerd's shims and pause; CRI-O's conmons), as USS
// (private pages: what ending them frees), PSS and RSS, with 1, 3 and 10
// containers in each pod, at 50 and 250 pods; and berthd's own growth.
func init() {
	register("memory", benchMemory)
}

var (
	memoryPodCounts       = flag.String("memory-pods", "50,250", "memory benchmark: pod counts, comma-separated")
	memoryContainerCounts = flag.String("memory-containers", "1,3,10", "memory benchmark: containers per pod, comma-separated, ascending")
	memoryExecs           = flag.Int("memory-execs", 3, "memory benchmark: ExecSync calls (true) into each pod's first container before measuring, as exec probes make them")
)

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("count %q: want a positive number", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no counts in %q", s)
	}
	sort.Ints(out)
	return out, nil
}

func benchMemory(e *env) error {
	podCounts, err := parseCounts(*memoryPodCounts)
	if err != nil {
		return fmt.Errorf("-memory-pods: %w", err)
	}
	ctrCounts, err := parseCounts(*memoryContainerCounts)
	if err != nil {
		return fmt.Errorf("-memory-containers: %w", err)
	}
	for _, pods := range podCounts {
		if err := memoryAt(e, pods, ctrCounts); err != nil {
			return err
		}
	}
	return nil
}

// memoryAt fills the node with pods, then grows every pod through the
// container counts, measuring after each step.
func memoryAt(e *env, pods int, ctrCounts []int) error {
	before := runtimePids()
	bpid, _ := berthdPid()
	var berthdBefore memUsage
	if bpid > 0 {
		berthdBefore, _ = readMemUsage(bpid)
	}
	set, err := newPodSet(e, strconv.FormatInt(time.Now().UnixNano(), 36)+"m")
	if err != nil {
		return err
	}
	defer set.remove()

	var uss1 float64
	for k, c := range ctrCounts {
		load := startLoad()
		if k == 0 {
			err = set.grow(pods, c, nil)
		} else {
			err = set.fill(c)
		}
		if err != nil {
			return fmt.Errorf("%d pods with %d containers: %w", pods, c, err)
		}
		// Let the processes settle (GC, lazily touched pages, berth's
		// shims handing over to berth-mon after 2 s idle) as they would
		// on a node.
		time.Sleep(4 * time.Second)
		if err := set.execAll(*memoryExecs); err != nil {
			return fmt.Errorf("%d pods with %d containers: %w", pods, c, err)
		}
		var sum memUsage
		byName := map[string]int{}
		for pid, name := range ofPods(runtimePids(), before, set.ids()) {
			m, err := readMemUsage(pid)
			if err != nil {
				continue
			}
			sum.add(m)
			byName[name]++
		}
		per := func(v uint64) float64 { return float64(v) / float64(pods) / 1024 }
		goal := ""
		if c == 1 {
			goal = "≤ 0.5 MB USS, ≤ 3 MB RSS"
			uss1 = per(sum.USS)
		}
		value := fmt.Sprintf("USS %.2f MB  PSS %.2f MB  RSS %.2f MB", per(sum.USS), per(sum.PSS), per(sum.RSS))
		fmt.Printf("   %d pods, %d containers each: per pod %s (processes %v)\n", pods, c, value, byName)
		l := load.stop()
		results.add(row{bench: "memory", measure: fmt.Sprintf("runtime processes per pod, %d container(s)", c), n: fmt.Sprintf("%d pods", pods), value: value, goal: goal, load: l})
		if k > 0 && uss1 > 0 {
			extra := (per(sum.USS) - uss1) / float64(c-ctrCounts[0])
			results.add(row{bench: "memory", measure: fmt.Sprintf("  USS per extra container (1→%d)", c), n: fmt.Sprintf("%d pods", pods), value: fmt.Sprintf("%.3f MB", extra), load: l})
		}
		if bpid > 0 {
			if m, err := readMemUsage(bpid); err == nil {
				results.add(row{bench: "memory", measure: fmt.Sprintf("berthd, %d container(s) per pod", c), n: fmt.Sprintf("%d pods", pods),
					value: fmt.Sprintf("USS %s (+%.1f kB per pod)  RSS %s", mb(m.USS), (float64(m.USS)-float64(berthdBefore.USS))/float64(pods), mb(m.RSS)), load: l})
			}
		}
	}
	return nil
}
