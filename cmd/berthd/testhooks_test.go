package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestTestHooks(t *testing.T) {
	// The environment the hooks were once read from turns nothing on.
	t.Setenv("BERTH_TEST_HOLD_CLEANUP", "1")
	t.Setenv("BERTH_TEST_HOLD_NET_RELEASE", "1")
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.hooks != (testHooks{}) {
		t.Errorf("hooks without --test-hooks: %+v", cfg.hooks)
	}
	cfg, err = parse(t, "", "--test-hooks", "hold-cleanup, hold-net-release")
	if err != nil || cfg.hooks != (testHooks{holdCleanup: true, holdNetRelease: true}) {
		t.Errorf("--test-hooks both: %+v, %v", cfg.hooks, err)
	}
	cfg, err = parse(t, "", "--test-hooks", "hold-net-release")
	if err != nil || cfg.hooks != (testHooks{holdNetRelease: true}) {
		t.Errorf("--test-hooks hold-net-release: %+v, %v", cfg.hooks, err)
	}
	if _, err := parse(t, "", "--test-hooks", "hold-everything"); err == nil || !strings.Contains(err.Error(), "hold-everything") {
		t.Errorf("unknown hook: %v, want an error naming it", err)
	}
}

func TestUsageHidesTestHooks(t *testing.T) {
	var fv flagValues
	fs := newFlagSet(&fv)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage()
	if !strings.Contains(out.String(), "-cni-bin-dir") || !strings.Contains(out.String(), "/usr/lib/cni") {
		t.Errorf("usage lacks the flags or their defaults:\n%s", out.String())
	}
	if strings.Contains(out.String(), testHooksFlag) {
		t.Errorf("usage shows the test-only flag:\n%s", out.String())
	}
}
