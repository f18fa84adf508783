package errdefs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestNoSpace(t *testing.T) {
	full := &os.PathError{Op: "write", Path: "/var/lib/berth/images/tmp/x", Err: syscall.ENOSPC}
	err := NoSpace(fmt.Errorf("%w: pull: %w", ErrUnavailable, full), "/var/lib/berth")
	if !errors.Is(err, ErrResourceExhausted) || !IsNoSpace(err) {
		t.Fatalf("NoSpace(ENOSPC) = %v, want ErrResourceExhausted wrapping ENOSPC", err)
	}
	if again := NoSpace(err, "/other"); again != err {
		t.Fatalf("NoSpace wrapped twice: %v", again)
	}
	quota := NoSpace(&os.PathError{Op: "write", Path: "f", Err: syscall.EDQUOT}, "/run/berth")
	if !errors.Is(quota, ErrResourceExhausted) {
		t.Fatalf("NoSpace(EDQUOT) = %v", quota)
	}
	other := errors.New("boom")
	if NoSpace(other, "/x") != other || NoSpace(nil, "/x") != nil {
		t.Fatal("NoSpace changed an error that is not about space")
	}
}
