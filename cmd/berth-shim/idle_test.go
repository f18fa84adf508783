package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestNextIdleBacksOff(t *testing.T) {
	const base, max = 2 * time.Second, time.Minute
	// An exec probe every 10 s: woken 8 s, 6 s, 2 s after the hand-offs,
	// then the wait (16 s) outlasts the period and it stays in Go.
	wait := base
	var got []time.Duration
	for range 6 {
		wait = nextIdle(base, max, wait, 10*time.Second-wait)
		got = append(got, wait)
	}
	want := []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
	if w := nextIdle(base, max, 32*time.Second, 2*time.Minute); w != base {
		t.Errorf("after a long nap the wait is %v, want the base %v", w, base)
	}
	if w := nextIdle(base, base, base, time.Millisecond); w != base {
		t.Errorf("max = base (no back-off) gave %v", w)
	}
	if w := nextIdle(base, max, 0, time.Millisecond); w != base {
		t.Errorf("a bad carried wait gave %v, want the base", w)
	}
}

func TestNapEnvRoundTrip(t *testing.T) {
	t.Setenv(idleMaxEnv, "1m")
	t.Setenv(napEnv, "stale")
	at := time.Now()
	env := napEnviron(3*time.Second, at)
	var naps []string
	for _, kv := range env {
		if strings.HasPrefix(kv, napEnv+"=") {
			naps = append(naps, kv)
		}
	}
	if len(naps) != 1 || strings.Contains(naps[0], "stale") {
		t.Fatalf("environment for berth-mon has %q", naps)
	}
	// What the resumed shim finds.
	os.Setenv(napEnv, strings.TrimPrefix(naps[0], napEnv+"="))
	if w := resumedIdle(2*time.Second, at.Add(5*time.Second)); w != 6*time.Second {
		t.Errorf("woken 5 s after a 3 s wait: next wait %v, want 6s", w)
	}
	if _, ok := os.LookupEnv(napEnv); ok {
		t.Error("the resumed shim keeps the nap in its environment")
	}
	if w := resumedIdle(2*time.Second, at); w != 2*time.Second {
		t.Errorf("no nap: wait %v, want the base", w)
	}
	os.Setenv(napEnv, "x:y")
	if w := resumedIdle(2*time.Second, at); w != 2*time.Second {
		t.Errorf("bad nap: wait %v, want the base", w)
	}
}
