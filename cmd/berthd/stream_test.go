package main

import (
	"strings"
	"testing"
	"time"
)

func TestStreamIdleTimeoutConfig(t *testing.T) {
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StreamIdleTimeout != "4h" {
		t.Errorf("default stream_idle_timeout = %q", cfg.StreamIdleTimeout)
	}
	cfg, err = parse(t, "stream_idle_timeout = \"90s\"\n")
	if err != nil || cfg.StreamIdleTimeout != "90s" {
		t.Errorf("stream_idle_timeout from file: %q, %v", cfg.StreamIdleTimeout, err)
	}
	for _, bad := range []string{"soon", "0s", "-1m"} {
		if _, err := parse(t, "stream_idle_timeout = \""+bad+"\"\n"); err == nil || !strings.Contains(err.Error(), "stream_idle_timeout") {
			t.Errorf("stream_idle_timeout %q: %v", bad, err)
		}
	}
}

// The URLs name the port the server got, not the configured port 0.
func TestStreamServerURLs(t *testing.T) {
	cfg := defaultConfig()
	cfg.StreamIdleTimeout = time.Minute.String()
	s, err := startStreamServer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if strings.HasSuffix(s.addr, ":0") || !strings.HasPrefix(s.addr, "127.0.0.1:") {
		t.Errorf("listening on %q", s.addr)
	}
}
