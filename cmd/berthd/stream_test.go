package main

import (
	"errors"
	"net"
	"net/http"
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

// A hijacked connection closed while nobody reads it (spdystream's idle
// timeout between two frames) still ends its request's context: the exec
// session's context, whose end kills the command.
func TestHijackedCloseEndsRequestContext(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	srv := &http.Server{ConnContext: connClosedContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			ended <- err
			return
		}
		conn.Close()
		select {
		case <-r.Context().Done():
			ended <- nil
		case <-time.After(time.Minute):
			ended <- errors.New("the request's context outlived its closed connection by a minute")
		}
	})}
	go func() { _ = srv.Serve(closeNotifyingListener{lis}) }()
	defer srv.Close()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client keeps its end open and silent, as an idle session's does.
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; err != nil {
		t.Error(err)
	}
}
