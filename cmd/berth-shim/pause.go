package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

func init() {
	roles["pause"] = pauseMain
	// Without cgo's constructor: hold blocks until it is killed.
	roles["hold"] = func([]string) int { select {} }
}

// nobody is the identity the pause process runs as.
const nobody = 65534

// pauseMain is PID 1 of a pod's shared PID namespace: it holds the
// namespace, reaps the orphans the kernel hands it, and does nothing else,
// without any privilege.
func pauseMain([]string) int {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "berth-shim pause: must be PID 1 of a new PID namespace")
		return 2
	}
	// Signals first: PID 1 gets only the signals it handles.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	// fd 3, when given, tells the shim whether we are ready.
	report := os.NewFile(3, "ready")
	unix.CloseOnExec(3)
	if err := dropPrivileges(); err != nil {
		_, _ = fmt.Fprintf(report, "%v", err)
		return 1
	}
	_, _ = report.Write([]byte("ok"))
	report.Close()
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			return 0
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return 0
}

// dropPrivileges leaves root: no groups, uid/gid nobody (which clears every
// capability set), and no way to regain privileges through execve.
func dropPrivileges() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	// Go applies these to every thread of the process.
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(nobody, nobody, nobody); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := unix.Setresuid(nobody, nobody, nobody); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	return nil
}
