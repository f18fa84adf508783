package shim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Streaming ops: berthd's streaming server (runtime/stream) runs an
// interactive exec or attaches to a container's main process through the
// pod's shim. After the Response the connection carries frames both ways
// (WriteFrame, ReadFrame) until the session ends:
//
//	berthd → shim  FrameStdin (bytes), FrameStdinClose, FrameResize (4 bytes)
//	shim → berthd  FrameStdout, FrameStderr (bytes), FrameExit (4 bytes)
//
// An exec ends with FrameExit (its exit code) once the command ended and
// its output was sent; berthd closing the connection before that kills the
// command. An attach ends when berthd closes the connection (detach) or
// with FrameExit when the container's main process ended.
const (
	// OpExec: ExecArgs, then frames.
	OpExec = "exec"
	// OpAttach: AttachArgs, then frames.
	OpAttach = "attach"
)

// ExecArgs starts Cmd in a running container, as ExecSync does, with the
// streams the client asked for. With Tty the command gets a terminal
// (stdout carries its output, there is no stderr) of Width×Height.
type ExecArgs struct {
	ID     string   `json:"id"`
	Cmd    []string `json:"cmd"`
	Tty    bool     `json:"tty,omitempty"`
	Stdin  bool     `json:"stdin,omitempty"`
	Stdout bool     `json:"stdout,omitempty"`
	Stderr bool     `json:"stderr,omitempty"`
	Width  uint16   `json:"width,omitempty"`
	Height uint16   `json:"height,omitempty"`
}

// ContainerID names the container an op is on.
func (a ExecArgs) ContainerID() string { return a.ID }

// AttachArgs attaches to a container's main process. Stdin needs a
// container created with stdin; StdinOnce (the container's setting, known
// to berthd) closes the process's stdin when this attach's stdin ends.
type AttachArgs struct {
	ID        string `json:"id"`
	Stdin     bool   `json:"stdin,omitempty"`
	Stdout    bool   `json:"stdout,omitempty"`
	Stderr    bool   `json:"stderr,omitempty"`
	StdinOnce bool   `json:"stdinOnce,omitempty"`
}

// ContainerID names the container an op is on.
func (a AttachArgs) ContainerID() string { return a.ID }

// Frame types of a streaming op.
const (
	FrameStdin      byte = 'i'
	FrameStdinClose byte = 'c'
	FrameResize     byte = 'r'
	FrameStdout     byte = 'o'
	FrameStderr     byte = 'e'
	FrameExit       byte = 'x'
)

// MaxFrame bounds a frame's payload: a longer one is a broken peer.
const MaxFrame = 1 << 20

// WriteFrame writes one frame: its type, the payload's length (4 bytes, big
// endian) and the payload.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame of %d bytes is over %d", len(payload), MaxFrame)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame; buf is reused for the payload when it is
// large enough.
func ReadFrame(r io.Reader, buf []byte) (typ byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes is over %d", n, MaxFrame)
	}
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// ResizePayload encodes a terminal size.
func ResizePayload(width, height uint16) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:2], width)
	binary.BigEndian.PutUint16(b[2:4], height)
	return b[:]
}

// ParseResize decodes a FrameResize payload.
func ParseResize(p []byte) (width, height uint16, ok bool) {
	if len(p) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]), true
}

// ExitPayload encodes an exit code.
func ExitPayload(code int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	return b[:]
}

// ParseExit decodes a FrameExit payload.
func ParseExit(p []byte) (int, bool) {
	if len(p) != 4 {
		return 0, false
	}
	return int(int32(binary.BigEndian.Uint32(p))), true
}

// FrameWriter writes frames from several goroutines (the stream copiers
// of a session share one connection).
type FrameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFrameWriter writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Frame writes one frame.
func (f *FrameWriter) Frame(typ byte, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return WriteFrame(f.w, typ, payload)
}

// Stream is an io.Writer whose writes become frames of type typ.
func (f *FrameWriter) Stream(typ byte) io.Writer { return typedWriter{f, typ} }

type typedWriter struct {
	fw  *FrameWriter
	typ byte
}

func (t typedWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += MaxFrame {
		end := min(off+MaxFrame, len(p))
		if err := t.fw.Frame(t.typ, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// Start sends a streaming op's request on conn and reads its Response. The
// returned reader continues right after the Response: read the frames from
// it, not from conn.
func Start(conn io.ReadWriter, op string, args any) (io.Reader, error) {
	req := Request{Op: op}
	var err error
	if req.Args, err = json.Marshal(args); err != nil {
		return nil, fmt.Errorf("shim %s: encode args: %w", op, err)
	}
	if err := json.NewEncoder(conn).Encode(&req); err != nil {
		return nil, fmt.Errorf("shim %s: send: %w", op, err)
	}
	// The Response is one line (json.Encoder's); frames follow at once.
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("shim %s: read answer: %w", op, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("shim %s: decode answer: %w", op, err)
	}
	if resp.Error != "" {
		return nil, &Error{Op: op, Code: resp.Code, Msg: resp.Error}
	}
	return br, nil
}
