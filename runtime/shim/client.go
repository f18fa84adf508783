package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Client calls the control socket of one pod's shim.
type Client struct {
	Socket string
}

// Connect returns a client for the shim of the pod whose state dir is
// stateDir. It does not dial: each Call does.
func Connect(stateDir string) *Client {
	return &Client{Socket: filepath.Join(stateDir, SocketName)}
}

// Dial opens a connection to the shim, for ops that stream.
func (c *Client) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	addr := c.Socket
	if len(addr) > 100 {
		// Too long for sockaddr_un: reach it through a descriptor of its dir.
		dir, err := os.OpenFile(filepath.Dir(addr), unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("connect to shim %s: %w", c.Socket, err)
		}
		defer dir.Close()
		addr = fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(addr))
	}
	conn, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to shim %s: %w", c.Socket, err)
	}
	return conn, nil
}

// Call runs op with args (nil for none) and decodes the result into result
// (nil to ignore it). A failure the shim reports is an *Error.
func (c *Client) Call(ctx context.Context, op string, args, result any) error {
	conn, err := c.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
	}
	// A cancelled context unblocks the read by expiring the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := Request{Op: op}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			return fmt.Errorf("shim %s: encode args: %w", op, err)
		}
	}
	if err := json.NewEncoder(conn).Encode(&req); err != nil {
		return fmt.Errorf("shim %s: send: %w", op, err)
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("shim %s: %w", op, ctx.Err())
		}
		return fmt.Errorf("shim %s: read answer: %w", op, err)
	}
	if resp.Error != "" {
		return &Error{Op: op, Code: resp.Code, Msg: resp.Error}
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("shim %s: decode result: %w", op, err)
		}
	}
	return nil
}

// Ping succeeds when the shim answers.
func (c *Client) Ping(ctx context.Context) error { return c.Call(ctx, OpPing, nil, nil) }

// Status asks the shim about itself.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.Call(ctx, OpStatus, nil, &st)
	return st, err
}

// Shutdown asks the shim to kill what it owns and exit.
func (c *Client) Shutdown(ctx context.Context) error { return c.Call(ctx, OpShutdown, nil, nil) }
