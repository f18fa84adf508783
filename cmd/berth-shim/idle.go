package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// idleMaxEnv bounds the back-off of the idle wait (the
// shim_idle_monitor_max config key); unset: defaultIdleMax.
const idleMaxEnv = "BERTH_SHIM_IDLE_MONITOR_MAX"

const defaultIdleMax = time.Minute

// napEnv carries, across a hand-off to berth-mon and back, the idle wait
// that hand-off followed and when it happened ("<wait ns>:<unix ns>"):
// berth-mon passes its environment on unchanged.
const napEnv = "_BERTH_SHIM_NAP"

// nextIdle is the idle wait after a return from berth-mon that lasted
// napped: a shim woken within max of its hand-off (an exec probe every few
// seconds) doubles its wait, so that a periodic caller soon keeps it in Go
// rather than paying a Go start each time; a longer nap starts again from
// base.
func nextIdle(base, max, prev, napped time.Duration) time.Duration {
	if max <= base || prev < base || napped >= max {
		return base
	}
	if prev >= max/2 {
		return max
	}
	return 2 * prev
}

// idleMax reads idleMaxEnv.
func idleMax(base time.Duration) time.Duration {
	v := os.Getenv(idleMaxEnv)
	if v == "" {
		return max(base, defaultIdleMax)
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < base {
		return base
	}
	return d
}

// resumedIdle is the idle wait of a shim back from berth-mon: from the
// nap napEnv describes, or base when there was none. It clears napEnv, so
// that nothing the shim starts inherits it.
func resumedIdle(base time.Duration, now time.Time) time.Duration {
	v, ok := os.LookupEnv(napEnv)
	if !ok {
		return base
	}
	os.Unsetenv(napEnv)
	waitS, atS, ok := strings.Cut(v, ":")
	wait, err1 := strconv.ParseInt(waitS, 10, 64)
	at, err2 := strconv.ParseInt(atS, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return base
	}
	return nextIdle(base, idleMax(base), time.Duration(wait), now.Sub(time.Unix(0, at)))
}

// napEnviron is the environment for berth-mon: ours with napEnv saying
// this hand-off followed a wait of after, now.
func napEnviron(after time.Duration, now time.Time) []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, napEnv+"=") {
			out = append(out, kv)
		}
	}
	return append(out, fmt.Sprintf("%s=%d:%d", napEnv, after.Nanoseconds(), now.UnixNano()))
}
