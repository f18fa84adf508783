package process

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// ownPIDNS is our own active PID namespace, which setns back to is always
// allowed; open for the process's life (a process never changes it).
var ownPIDNS = sync.OnceValues(func() (*os.File, error) {
	f, err := os.Open("/proc/self/ns/pid")
	if err != nil {
		return nil, fmt.Errorf("open own PID namespace: %w", err)
	}
	return f, nil
})

// startInPIDNS starts cmd as a child born in the PID namespace at path.
// Only children enter a PID namespace: started from here, the init is
// already inside it and needs no fork of its own to get there (nsenter.c's
// fork costs an exec about a third of its setup). Unlike the mount and
// user namespaces, a thread of a multi-threaded process may set the PID
// namespace its children get; this one does it on a locked thread and puts
// its own back before other goroutines may use the thread. A thread the Go
// runtime needs meanwhile is not cloned from this one (the kernel would
// refuse a thread in another PID namespace): from a locked thread, newm
// asks its template thread to create it.
func startInPIDNS(cmd *exec.Cmd, path string) error {
	return inPIDNS(path, cmd.Start)
}

// inPIDNS runs start on a thread whose children are born in the PID
// namespace at path.
func inPIDNS(path string, start func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open PID namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	return inPIDNSFile(target, path, start)
}

// inPIDNSFile is inPIDNS with the namespace open already (target); path
// names it in errors.
func inPIDNSFile(target int, path string, start func() error) error {
	own, err := ownPIDNS()
	if err != nil {
		return err
	}

	runtime.LockOSThread()
	if err := unix.Setns(target, unix.CLONE_NEWPID); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("join PID namespace %s: %w", path, err)
	}
	err = start()
	if rerr := unix.Setns(int(own.Fd()), unix.CLONE_NEWPID); rerr == nil {
		runtime.UnlockOSThread()
	}
	// else the thread stays locked and ends with this goroutine: no other
	// child of ours may be born in the container.
	if err != nil {
		return fmt.Errorf("start in PID namespace %s: %w", path, err)
	}
	return nil
}
