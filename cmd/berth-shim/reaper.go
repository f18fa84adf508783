package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper waits for every child (we are a subreaper) and hands exit statuses
// to whoever watches the pid; statuses nobody watched yet are kept.
type reaper struct {
	mu       sync.Mutex
	watchers map[int]chan unix.WaitStatus
	exited   map[int]keptStatus
	// frozen: a demotion is under way; children exiting now stay zombies.
	frozen bool
}

// keptStatus is an exit nobody watched yet: an exec's process may exit
// before its watch is set (it runs to its execve without waiting), and
// the short-lived processes that fork into a PID namespace are never
// watched. Those are dropped after keptFor, so that the map never fills.
type keptStatus struct {
	ws unix.WaitStatus
	at time.Time
}

const (
	keptFor  = time.Minute
	keptMost = 1 << 14
)

func newReaper() *reaper {
	r := &reaper{watchers: map[int]chan unix.WaitStatus{}, exited: map[int]keptStatus{}}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		for range ch {
			r.reap()
		}
	}()
	return r
}

func (r *reaper) reap() {
	for {
		// The lock is held across the wait (WNOHANG: it does not block)
		// so that freeze, once it has the lock, knows no exit is taken
		// and not yet handed out.
		r.mu.Lock()
		if r.frozen {
			r.mu.Unlock()
			return
		}
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			r.mu.Unlock()
			continue
		}
		if pid <= 0 || err != nil {
			r.mu.Unlock()
			return
		}
		if w, ok := r.watchers[pid]; ok {
			delete(r.watchers, pid)
			w <- ws
		} else {
			r.keep(pid, ws, time.Now())
		}
		r.mu.Unlock()
	}
}

// keep holds an exit nobody watched yet; r.mu is held.
func (r *reaper) keep(pid int, ws unix.WaitStatus, now time.Time) {
	if len(r.exited) >= 1024 {
		for p, k := range r.exited {
			if now.Sub(k.at) > keptFor {
				delete(r.exited, p)
			}
		}
	}
	if len(r.exited) < keptMost {
		r.exited[pid] = keptStatus{ws: ws, at: now}
	}
}

// watch returns a channel that receives pid's exit status once.
func (r *reaper) watch(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		ch <- k.ws
		return ch
	}
	r.watchers[pid] = ch
	return ch
}

// The reaper keeps statuses nobody watched (e.g. the short-lived process
// that forks a container's init into its PID namespace); one kept for an
// earlier process that had this pid must not be taken for this one's.
func (r *reaper) watchLive(pid int) <-chan unix.WaitStatus {
	r.mu.Lock()
	if _, ok := r.exited[pid]; ok {
		// While /proc/<pid> exists the process was not reaped, so the
		// status kept is an earlier one's.
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			delete(r.exited, pid)
		}
	}
	r.mu.Unlock()
	return r.watch(pid)
}

// freeze stops reaping (reap holds the lock while it hands out a status,
// so what watching tells stays true until thaw).
func (r *reaper) freeze() {
	r.mu.Lock()
	r.frozen = true
	r.mu.Unlock()
}

// thaw reaps again, including what exited while frozen.
func (r *reaper) thaw() {
	r.mu.Lock()
	r.frozen = false
	r.mu.Unlock()
	r.reap()
}

// watching tells whether pid is watched and not reaped yet.
func (r *reaper) watching(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.watchers[pid]
	return ok
}
