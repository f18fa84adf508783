// Package stream runs the sessions of berthd's streaming server
// (k8s.io/cri-streaming): exec and attach through the pod's shim (frames of
// runtime/shim/stream.go), port-forward by dialing inside the pod's network
// namespace. It implements the library's Runtime; cmd/berthd serves it.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/shim"
)

// Target is a running container to exec in or attach to.
type Target struct {
	ID      string
	ShimDir string // the pod's state dir, with the shim's socket
	Tty     bool
	// Stdin: created with stdin; StdinOnce: the first attach closes it.
	Stdin, StdinOnce bool
}

// Containers finds running containers by id or unique id prefix; one that
// does not run is an error wrapping errdefs.ErrFailedPrecondition.
type Containers interface {
	StreamTarget(ctx context.Context, id string) (*Target, error)
}

// Pods finds the network namespace of a ready pod: its pinned path, or ""
// for a pod in the node's network namespace.
type Pods interface {
	NetNS(id string) (string, error)
}

// Runtime runs streaming sessions.
type Runtime struct {
	Containers Containers
	Pods       Pods
}

// Target finds a running container, for the CRI call that hands out the
// session's URL.
func (r *Runtime) Target(ctx context.Context, id string) (*Target, error) {
	return r.Containers.StreamTarget(ctx, id)
}

// Pod checks that a pod is ready for port forwarding.
func (r *Runtime) Pod(id string) error {
	_, err := r.Pods.NetNS(id)
	return err
}

// Exec runs cmd in a running container with the client's streams; a
// non-zero exit is a utilexec.ExitError, which the library reports as the
// command's exit code.
func (r *Runtime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	t, err := r.Containers.StreamTarget(ctx, containerID)
	if err != nil {
		return err
	}
	args := shim.ExecArgs{ID: t.ID, Cmd: cmd, Tty: tty, Stdin: in != nil, Stdout: out != nil, Stderr: errOut != nil && !tty}
	if tty && resize != nil {
		// The first size (the client's terminal) is sent before the
		// stream starts; take it if it is there already.
		select {
		case sz, ok := <-resize:
			if ok {
				args.Width, args.Height = sz.Width, sz.Height
			}
		default:
		}
	}
	code, err := session(ctx, t.ShimDir, shim.OpExec, args, in, out, errOut, resize)
	if err != nil {
		return fmt.Errorf("exec in container %s: %w", t.ID, err)
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command %q exited with %d", cmd, code), Code: code}
	}
	return nil
}

// Attach connects the client's streams to a container's main process
// until the client detaches or the process ends.
func (r *Runtime) Attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	t, err := r.Containers.StreamTarget(ctx, containerID)
	if err != nil {
		return err
	}
	if out == nil && errOut == nil && in == nil {
		return fmt.Errorf("attach to container %s: no stream asked for: %w", t.ID, errdefs.ErrInvalidArgument)
	}
	if in != nil && !t.Stdin {
		return fmt.Errorf("attach to container %s: it was not created with stdin: %w", t.ID, errdefs.ErrFailedPrecondition)
	}
	if !t.Tty {
		resize = nil
	}
	args := shim.AttachArgs{ID: t.ID, Stdin: in != nil, Stdout: out != nil, Stderr: errOut != nil, StdinOnce: t.StdinOnce}
	if _, err := session(ctx, t.ShimDir, shim.OpAttach, args, in, out, errOut, resize); err != nil {
		return fmt.Errorf("attach to container %s: %w", t.ID, err)
	}
	return nil
}

// errDetached ends an attach whose client went away.
var errDetached = errors.New("detached")

// session relays a streaming op of the shim: it returns the exit code the
// shim reported, or an error (the shim's refusal, a broken connection).
// The context's end closes the connection, which makes the shim kill an
// exec's command.
func session(ctx context.Context, shimDir, op string, args any, in io.Reader, out, errOut io.Writer, resize <-chan remotecommand.TerminalSize) (int, error) {
	conn, err := shim.Connect(shimDir).Dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	frames, err := shim.Start(conn, op, args)
	if err != nil {
		return 0, err
	}
	fw := shim.NewFrameWriter(conn)
	if in != nil {
		go func() {
			// Ends when the client closes stdin, or with the session
			// (the library closes the stream).
			_, err := io.Copy(fw.Stream(shim.FrameStdin), in)
			if err == nil {
				_ = fw.Frame(shim.FrameStdinClose, nil)
			}
		}()
	}
	done := make(chan struct{})
	defer close(done)
	if resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					if fw.Frame(shim.FrameResize, shim.ResizePayload(sz.Width, sz.Height)) != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	buf := make([]byte, 32<<10)
	for {
		typ, p, err := shim.ReadFrame(frames, buf)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if errors.Is(err, io.EOF) && op == shim.OpAttach {
				// The shim ended the attach: the client's stdin ended.
				return 0, nil
			}
			return 0, fmt.Errorf("connection to the shim: %w", err)
		}
		var w io.Writer
		switch typ {
		case shim.FrameStdout:
			w = out
		case shim.FrameStderr:
			w = errOut
		case shim.FrameExit:
			code, ok := shim.ParseExit(p)
			if !ok {
				return 0, errors.New("bad exit frame from the shim")
			}
			return code, nil
		default:
			klog.V(4).InfoS("Unknown frame from the shim", "type", typ)
			continue
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			// The client is gone: end the session.
			return 0, errDetached
		}
	}
}
