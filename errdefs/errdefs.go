// Package errdefs is the error vocabulary the domain packages share with the
// CRI layer: a domain error wraps one of these, and cri maps it to a gRPC code
// without the domain packages knowing about gRPC.
package errdefs

import (
	"errors"
	"fmt"
	"syscall"
)

var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrUnimplemented      = errors.New("not implemented")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrUnauthenticated    = errors.New("unauthenticated")
	// ErrResourceExhausted: a file system out of space or quota, a limit reached.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrDataLoss: content that does not match its digest or size.
	ErrDataLoss = errors.New("data loss")
)

// IsNoSpace tells whether err is a file system out of space or quota.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// NoSpace names the file system (by the directory berth writes to) when err
// is a lack of space or quota, so that the caller sees ResourceExhausted and
// where, not the error of whatever was writing; other errors pass unchanged.
func NoSpace(err error, dir string) error {
	if err == nil || !IsNoSpace(err) || errors.Is(err, ErrResourceExhausted) {
		return err
	}
	return fmt.Errorf("%w: no space left on the file system of %s: %w", ErrResourceExhausted, dir, err)
}
