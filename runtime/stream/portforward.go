package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// dialTimeout bounds a connect inside the pod; loopback answers at once,
// so this only matters for a pod whose network is wedged.
const dialTimeout = 10 * time.Second

// PortForward copies data between the client's stream and a TCP
// connection to port on the pod's loopback (the node's for a pod in the
// node's network namespace), both ways, until either side closes.
func (r *Runtime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port forward to pod %s: bad port %d", podSandboxID, port)
	}
	netns, err := r.Pods.NetNS(podSandboxID)
	if err != nil {
		return fmt.Errorf("port forward to pod %s: %w", podSandboxID, err)
	}
	conn, err := dialIn(ctx, netns, int(port))
	if err != nil {
		return fmt.Errorf("port forward to pod %s port %d: %w", podSandboxID, port, err)
	}
	defer conn.Close()
	klog.V(4).InfoS("Port forward", "pod", podSandboxID, "port", port)

	// The pod's answer is done when it closes; the client's request is
	// done when it closes its side, which the pod sees as our half-close.
	toPod := make(chan struct{})
	go func() {
		defer close(toPod)
		_, _ = io.Copy(conn, stream)
		_ = conn.(*net.TCPConn).CloseWrite()
	}()
	fromPod := make(chan struct{})
	go func() {
		defer close(fromPod)
		_, _ = io.Copy(stream, conn)
	}()
	select {
	case <-fromPod:
	case <-ctx.Done():
	}
	return nil
}

// dialIn connects to port on the loopback of the network namespace netns
// ("" for berthd's own). The socket is made by a thread that joined the
// namespace; the thread is never unlocked, so it ends with its goroutine
// and no other code runs in the pod's namespace. A socket keeps its
// namespace, so the connection is used from any thread afterwards.
func dialIn(ctx context.Context, netns string, port int) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	dial := func() (net.Conn, error) {
		var d net.Dialer
		var errs []error
		// A server may listen on IPv4 only, IPv6 only or both.
		for _, host := range []string{"127.0.0.1", "::1"} {
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("nothing listens on port %d: %w", port, errors.Join(errs...))
	}
	if netns == "" {
		return dial()
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Returning without UnlockOSThread ends this thread.
		f, err := os.Open(netns)
		if err != nil {
			ch <- result{nil, fmt.Errorf("open network namespace: %w", err)}
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			ch <- result{nil, fmt.Errorf("join network namespace %s: %w", netns, err)}
			return
		}
		c, err := dial()
		ch <- result{c, err}
	}()
	res := <-ch
	return res.c, res.err
}
