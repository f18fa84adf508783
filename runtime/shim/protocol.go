// Package shim is berthd's side of the per-pod berth-shim: it launches the
// shim detached from berthd, connects to its control socket and calls its
// operations. It also defines the control protocol, which cmd/berth-shim
// serves; the package imports nothing heavy so that the shim binary, which
// shares these types, stays small.
//
// # Protocol
//
// The shim listens on a unix socket, <pod state dir>/shim.sock (mode 0600).
// A client connects and writes one JSON Request; the shim answers with one
// JSON Response. A connection may carry further request/response pairs in
// sequence; the client in this package opens one connection per call.
//
//	→ {"op":"status","args":{...}}
//	← {"result":{...}}                     success
//	← {"error":"...","code":"not_found"}   failure; code is one of the Code* constants
//
// An op that streams (exec, attach: the containers work) answers its
// Response first and then owns the connection: the client reads/writes raw
// bytes on it until either side closes. Its request is one JSON object and
// a newline (as json.Encoder writes it); the stream starts right after that
// newline, and bytes sent together with the request are not lost. Call does
// not support those; use Dial and the op's own framing.
//
// Ops defined now: "ping" (no args, result {}), "status" (result Status) and
// "shutdown" (the shim kills the processes it owns, answers, removes its
// socket and exits). Adding an op: define its name, args and result types in
// this package (a file per area, e.g. container.go), then register a handler
// in cmd/berth-shim from its own file:
//
//	func init() { handlers[shim.OpStart] = handleStart }
//	func handleStart(s *server, args json.RawMessage) (any, error)
//
// or, for a streaming op, streamHandlers[...]. Unknown ops answer code
// "unimplemented", so a newer berthd can probe an older shim.
package shim

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/errdefs"
)

// Ops of the control protocol.
const (
	OpPing     = "ping"
	OpStatus   = "status"
	OpShutdown = "shutdown"
)

// Error codes of a Response.
const (
	CodeUnknown         = "unknown"
	CodeInvalidArgument = "invalid_argument"
	CodeNotFound        = "not_found"
	CodeAlreadyExists   = "already_exists"
	CodeFailedPrecond   = "failed_precondition"
	CodeUnimplemented   = "unimplemented"
)

// SocketName is the control socket's name inside the pod state dir.
const SocketName = "shim.sock"

// Request is one call on the control socket.
type Request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response answers a Request: Error empty means success.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
}

// Status is the result of OpStatus.
type Status struct {
	PodID   string `json:"podId"`
	Pid     int    `json:"pid"`
	Version string `json:"version,omitempty"`
	// PausePid is the pid (in the node's PID namespace) of the pause process
	// that is PID 1 of the pod's shared PID namespace; 0 when the pod has none.
	PausePid int `json:"pausePid,omitempty"`
	// Started is when the shim started serving (RFC 3339, UTC).
	Started string `json:"started"`
}

// Error is a failure the shim reported. It matches (errors.Is) the errdefs
// sentinel of its code, so berthd maps it to a gRPC code without knowing the
// protocol.
type Error struct {
	Op   string
	Code string
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("shim %s: %s", e.Op, e.Msg) }

var codeErrs = map[string]error{
	CodeInvalidArgument: errdefs.ErrInvalidArgument,
	CodeNotFound:        errdefs.ErrNotFound,
	CodeAlreadyExists:   errdefs.ErrAlreadyExists,
	CodeFailedPrecond:   errdefs.ErrFailedPrecondition,
	CodeUnimplemented:   errdefs.ErrUnimplemented,
}

func (e *Error) Is(target error) bool {
	return target != nil && codeErrs[e.Code] == target
}

// CodeOf is the protocol code of err: the code of the errdefs sentinel it
// wraps, CodeUnknown otherwise. The shim uses it to answer.
func CodeOf(err error) string {
	for code, sentinel := range codeErrs {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return CodeUnknown
}
