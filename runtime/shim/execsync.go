package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/errdefs"
)

// OpExecSyncStream runs a command in a container as OpExecSync does, but
// streams its output instead of answering it in one JSON value (which
// held every byte several times over in both processes). After the
// Response the shim sends FrameStdout and FrameStderr frames, each
// stream's first ExecSyncArgs.MaxOutput bytes (the rest is read and
// dropped, so the command never blocks on a full pipe), and last one
// FrameResult whose payload is the JSON of ExecSyncEnd. berthd closing
// the connection first kills the command.
const OpExecSyncStream = "exec-sync-stream"

// FrameResult ends an OpExecSyncStream.
const FrameResult byte = 'z'

// ExecSyncEnd is how a command run by OpExecSyncStream ended, and how much
// it wrote in all.
type ExecSyncEnd struct {
	ExitCode    int   `json:"exitCode"`
	TimedOut    bool  `json:"timedOut,omitempty"`
	StdoutBytes int64 `json:"stdoutBytes"`
	StderrBytes int64 `json:"stderrBytes"`
}

// ExecSync runs args.Cmd in a container and returns its output, at most
// limit bytes of stdout and stderr together: each stream keeps its first
// bytes, and when both would not fit each gets at least half of limit (a
// stream that needs less leaves the rest to the other). The memory it
// holds is bounded by limit, whatever the command writes. StdoutBytes and
// StderrBytes of the result tell what the command wrote in all.
func (c *Client) ExecSync(ctx context.Context, args ExecSyncArgs, limit int) (*ExecSyncResult, error) {
	conn, err := c.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	args.MaxOutput = limit
	frames, err := Start(conn, OpExecSyncStream, args)
	if errors.Is(err, errdefs.ErrUnimplemented) {
		// A shim started before berthd was upgraded.
		conn.Close()
		return c.execSyncOld(ctx, args, limit)
	}
	if err != nil {
		return nil, err
	}
	out := NewOutputBudget(limit)
	buf := make([]byte, 64<<10)
	for {
		typ, p, err := ReadFrame(frames, buf)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("shim %s: %w", OpExecSyncStream, err)
		}
		switch typ {
		case FrameStdout:
			out.Add(0, p)
		case FrameStderr:
			out.Add(1, p)
		case FrameResult:
			var end ExecSyncEnd
			if err := json.Unmarshal(p, &end); err != nil {
				return nil, fmt.Errorf("shim %s: decode result: %w", OpExecSyncStream, err)
			}
			return &ExecSyncResult{
				Stdout: out.Bytes(0), Stderr: out.Bytes(1), ExitCode: end.ExitCode, TimedOut: end.TimedOut,
				StdoutBytes: end.StdoutBytes, StderrBytes: end.StderrBytes,
			}, nil
		}
	}
}

func (c *Client) execSyncOld(ctx context.Context, args ExecSyncArgs, limit int) (*ExecSyncResult, error) {
	var res ExecSyncResult
	if err := c.Call(ctx, OpExecSync, args, &res); err != nil {
		return nil, err
	}
	out := NewOutputBudget(limit)
	out.Add(0, res.Stdout)
	out.Add(1, res.Stderr)
	res.StdoutBytes, res.StderrBytes = int64(len(res.Stdout)), int64(len(res.Stderr))
	res.Stdout, res.Stderr = out.Bytes(0), out.Bytes(1)
	return &res, nil
}

// OutputBudget keeps the first bytes of two streams within one limit.
// Each stream is guaranteed its half; a stream that uses less leaves the
// rest to the other. What is kept is the same whatever order the bytes
// come in: a stream that took more than its half gives its last bytes
// back when the other needs them, and can never grow again after that, so
// that what is kept of each stream is always its beginning.
type OutputBudget struct {
	limit int
	half  [2]int // the guaranteed part of each stream
	buf   [2][]byte
}

// NewOutputBudget keeps at most limit bytes in all.
func NewOutputBudget(limit int) *OutputBudget {
	return &OutputBudget{limit: limit, half: [2]int{limit / 2, limit - limit/2}}
}

// Add appends p to stream i (0 or 1) as far as the budget allows.
func (o *OutputBudget) Add(i int, p []byte) {
	other := 1 - i
	room := o.limit - min(len(o.buf[other]), o.half[other]) - len(o.buf[i])
	if n := min(room, len(p)); n > 0 {
		b := o.buf[i]
		if cap(b)-len(b) < n {
			// Grown by doubling, but never past the limit.
			grown := make([]byte, len(b), min(max(2*cap(b), len(b)+n, 4096), o.limit))
			copy(grown, b)
			b = grown
		}
		o.buf[i] = append(b, p[:n]...)
	}
	if over := len(o.buf[i]) + len(o.buf[other]) - o.limit; over > 0 {
		o.buf[other] = o.buf[other][:len(o.buf[other])-over]
	}
}

// Bytes is what was kept of stream i.
func (o *OutputBudget) Bytes(i int) []byte { return o.buf[i] }
