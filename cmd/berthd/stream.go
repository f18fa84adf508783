package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/stream"
	"github.com/berth-dev/berth/sandbox"
)

// streamServer is the exec/attach/port-forward HTTP server (SPDY and
// websockets, by k8s.io/cri-streaming) whose URLs the CRI calls hand out.
type streamServer struct {
	streaming.Server
	ws   *stream.Websocket
	http *http.Server
	addr string
}

// startStreamServer listens on cfg.StreamAddress (port 0: a free one, the
// URLs name the real one) and serves in the background.
func startStreamServer(cfg Config, rt *stream.Runtime) (*streamServer, error) {
	lis, err := net.Listen("tcp", cfg.StreamAddress)
	if err != nil {
		return nil, fmt.Errorf("streaming server: listen on %s: %w", cfg.StreamAddress, err)
	}
	idle, _ := time.ParseDuration(cfg.StreamIdleTimeout)
	c := streaming.DefaultConfig
	c.Addr = lis.Addr().String()
	c.BaseURL = &url.URL{Scheme: "http", Host: c.Addr}
	c.StreamIdleTimeout = idle
	lib, err := streaming.NewServer(c, rt)
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	// Websocket-only clients are served in front of the library.
	ws := &stream.Websocket{Next: lib, Self: c.BaseURL.String(), IdleTimeout: idle}
	s := &streamServer{Server: lib, ws: ws, addr: c.Addr, http: &http.Server{
		Handler: ws, ReadHeaderTimeout: time.Minute, ConnContext: connClosedContext,
	}}
	go func() {
		if err := s.http.Serve(closeNotifyingListener{lis}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Streaming server stopped")
		}
	}()
	klog.InfoS("Streaming server listening", "address", c.Addr, "idleTimeout", idle)
	return s, nil
}

// A session's context must end when its connection is closed (the idle
// timeout, the client gone): that is what kills an exec's command. After the
// library hijacks the connection net/http only notices a close when a read
// of the hijacked connection fails while in flight, and spdystream's wrapper
// answers reads after its Close with EOF of its own, so a close between two
// reads left the session, and its command, running for good. The listener's
// connections cancel their requests' context when closed.
type closeNotifyingListener struct{ net.Listener }

func (l closeNotifyingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &closeNotifyingConn{Conn: c, ctx: ctx, cancel: cancel}, nil
}

type closeNotifyingConn struct {
	net.Conn
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *closeNotifyingConn) Close() error {
	defer c.cancel()
	return c.Conn.Close()
}

// connClosedContext makes the requests of a connection end with it.
func connClosedContext(ctx context.Context, c net.Conn) context.Context {
	cc, ok := c.(*closeNotifyingConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(cc.ctx, cancel)
	return ctx
}

// GetExec hands out an exec URL, and tells the websocket front what the
// session's streams are.
func (s *streamServer) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	resp, err := s.Server.GetExec(req)
	if err == nil {
		s.ws.Remember(resp.Url, req.Stdin, req.Stdout, req.Stderr, req.Tty)
	}
	return resp, err
}

// GetAttach hands out an attach URL, and tells the websocket front what
// the session's streams are.
func (s *streamServer) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	resp, err := s.Server.GetAttach(req)
	if err == nil {
		s.ws.Remember(resp.Url, req.Stdin, req.Stdout, req.Stderr, req.Tty)
	}
	return resp, err
}

// Stop closes the listener; sessions under way end with berthd.
func (s *streamServer) Stop() error { return s.http.Close() }

// streamContainers shows the streaming runtime the running containers.
type streamContainers struct{ m *container.Manager }

func (c streamContainers) StreamTarget(ctx context.Context, id string) (*stream.Target, error) {
	t, err := c.m.StreamTarget(ctx, id)
	if err != nil {
		return nil, err
	}
	return &stream.Target{ID: t.ID, ShimDir: t.ShimDir, Tty: t.Tty, Stdin: t.Stdin, StdinOnce: t.StdinOnce}, nil
}

// streamPods shows the streaming runtime the network namespace of ready pods.
type streamPods struct{ m *sandbox.Manager }

func (p streamPods) NetNS(id string) (string, error) {
	st, err := p.m.Status(id)
	if err != nil {
		return "", err
	}
	if !st.Ready {
		reason := st.Reason
		if reason == "" {
			reason = "not ready"
		}
		return "", fmt.Errorf("pod %s: %s: %w", st.ID, reason, errdefs.ErrFailedPrecondition)
	}
	return st.NetNS, nil
}
