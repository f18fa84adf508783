// Package errdefs is the error vocabulary the domain packages share with the
// CRI layer: a domain error wraps one of these, and cri maps it to a gRPC code
// without the domain packages knowing about gRPC.
package errdefs

import "errors"

var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrUnimplemented      = errors.New("not implemented")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrUnauthenticated    = errors.New("unauthenticated")
	// ErrDataLoss: content that does not match its digest or size.
	ErrDataLoss = errors.New("data loss")
)
