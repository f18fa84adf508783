package cri

import (
	"context"
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/errdefs"
)

var codeOf = []struct {
	err  error
	code codes.Code
}{
	// Out of space first: a full disk under a pull must not read as the
	// registry's fault (Unavailable) even when a layer wraps both.
	{errdefs.ErrResourceExhausted, codes.ResourceExhausted},
	{syscall.ENOSPC, codes.ResourceExhausted},
	{syscall.EDQUOT, codes.ResourceExhausted},
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists},
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrUnimplemented, codes.Unimplemented},
	{errdefs.ErrPermissionDenied, codes.PermissionDenied},
	{errdefs.ErrUnauthenticated, codes.Unauthenticated},
	{errdefs.ErrDataLoss, codes.DataLoss},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// toStatus maps a domain error to a gRPC status error; errors that already
// carry a status pass through unchanged.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return status.Error(c.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}
