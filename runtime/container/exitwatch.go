package container

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/runtime/shim"
)

// exits learns of a container's exit when its shim writes the exit record
// (inotify on the container's state dir), so that List answers from the
// records alone, without a file read per container, and is still current.
// The once-a-second watcher (watch.go) stays the backstop: for a watch
// that could not be added, and for shims that die without a record.
type exits struct {
	fd  int // f's; f.Fd() would make it blocking
	f   *os.File
	mu  sync.Mutex
	wds map[int32]string // watch descriptor → container id
	ids map[string]bool  // the containers watched
	// lost is set when the kernel dropped events (its queue overflowed):
	// the watcher's next round then reads every exit record.
	lost atomic.Bool
}

// newExits starts the exit notifications; nil when inotify is unavailable.
func newExits(m *Manager) *exits {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		klog.ErrorS(err, "inotify unavailable; container exits are polled")
		return nil
	}
	// Non-blocking: reads wait in Go's poller, not on a thread.
	x := &exits{fd: fd, f: os.NewFile(uintptr(fd), "inotify"), wds: map[int32]string{}, ids: map[string]bool{}}
	go x.run(m)
	return x
}

// add watches a container's state dir for its exit record.
func (x *exits) add(id, stateDir string) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	wd, err := unix.InotifyAddWatch(x.fd, stateDir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_ONLYDIR)
	if err != nil {
		klog.V(2).InfoS("Watch container exit record; its exit is polled", "container", id, "err", err)
		return
	}
	x.wds[int32(wd)] = id
	x.ids[id] = true
}

// watching says whether an exit record of id would be noticed.
func (x *exits) watching(id string) bool {
	if x == nil || x.lost.Load() {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.ids[id]
}

func (x *exits) close() {
	if x != nil {
		x.f.Close()
	}
}

// run reads the events until the inotify file is closed.
func (x *exits) run(m *Manager) {
	buf := make([]byte, 64<<10)
	for {
		n, err := x.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameAt := off + unix.SizeofInotifyEvent
			name := string(trimNUL(buf[nameAt : nameAt+int(ev.Len)]))
			off = nameAt + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				x.lost.Store(true)
				continue
			}
			x.mu.Lock()
			id := x.wds[ev.Wd]
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(x.wds, ev.Wd) // the dir is gone
				delete(x.ids, id)
			}
			x.mu.Unlock()
			if id == "" || name != shim.ExitFile {
				continue
			}
			rec, err := m.store.Get(id)
			if err != nil || rec.Status.State == Exited {
				continue
			}
			if _, err := m.refresh(context.Background(), rec, false); err != nil {
				klog.V(2).InfoS("Record container exit", "container", id, "err", err)
			}
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
