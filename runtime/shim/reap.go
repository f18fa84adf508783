package shim

import (
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// reap waits for a started child to exit and reaps it, closing the channel
// it returns then. berthd is a shim's parent for the shim's whole life (until
// berthd restarts), so the wait must not hold an OS thread: a goroutine in a
// blocking wait(2) keeps one thread per live pod, and the Go runtime never
// ends a thread it made, so berthd's threads would grow with the pods and
// stay at that peak after they are gone. The pidfd turns readable when the
// process exits and the runtime's poller watches it like a socket; only then
// does Wait (which no longer blocks) reap it. Kernels without pollable
// pidfds (before 5.3) fall back to a waiting goroutine.
func reap(cmd *exec.Cmd) <-chan struct{} {
	done := make(chan struct{})
	f := pidfdFile(cmd.Process.Pid)
	go func() {
		defer close(done)
		if f != nil {
			defer f.Close()
			if rc, err := f.SyscallConn(); err == nil {
				// Returns once the poller saw the pidfd readable: exited.
				_ = rc.Read(func(fd uintptr) bool { return exitedPidfd(int(fd)) })
			}
		}
		_ = cmd.Wait()
	}()
	return done
}

// pidfdFile is a non-blocking pidfd of pid as a file the runtime's poller
// watches, nil when the kernel has none.
func pidfdFile(pid int) *os.File {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		// PIDFD_NONBLOCK is from Linux 5.10; the poller needs O_NONBLOCK.
		if fd, err = unix.PidfdOpen(pid, 0); err != nil {
			return nil
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return nil
		}
	}
	// os.NewFile registers a non-blocking fd with the poller.
	return os.NewFile(uintptr(fd), "pidfd")
}

// exitedPidfd tells whether the pidfd's process has exited (the pidfd is
// readable), without blocking.
func exitedPidfd(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	// An error other than EINTR would repeat forever: let Wait decide.
	return (err != nil && err != unix.EINTR) || (n > 0 && p[0].Revents != 0)
}
