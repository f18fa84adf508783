package main

import (
	"testing"
	"time"
)

func TestExpandNmeter(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC)
	for format, want := range map[string]string{
		"%3t":     "03:04:05.678",
		"%t":      "03:04:05",
		"at %6t!": "at 03:04:05.678901!",
		"100%":    "100%",
		"%x %1t":  "%x 03:04:05.6",
	} {
		if got := expandNmeter(format, at); got != want {
			t.Errorf("expandNmeter(%q) = %q, want %q", format, got, want)
		}
	}
}
