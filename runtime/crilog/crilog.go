// Package crilog writes container output in the CRI log format the kubelet
// parses: "<RFC3339Nano> <stdout|stderr> <P|F> <text>\n". A line longer than
// the buffer is split into partial (P) records ending with a full (F) one.
package crilog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-dev/berth/runtime/safefile"
)

// DefaultMaxLine is the longest record written before a line is split, as
// containerd does (16 KiB).
const DefaultMaxLine = 16 * 1024

// File is a CRI log file shared by a container's stdout and stderr copiers.
// Reopen swaps the file after the kubelet rotated it.
//
// The file is a path below the pod's log directory, a place others can
// write to (a log collector, a container with a hostPath of it): it is
// opened without following a symlink and without leaving the directory,
// and only a regular file of its own is appended to (package safefile).
type File struct {
	dir, name string
	now       func() time.Time

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	created bool // Open made the file
}

// Open opens the log file name, a relative path below the directory dir,
// for appending; the file and the directories above it below dir are made
// when missing.
func Open(dir, name string) (*File, error) {
	l := &File{dir: dir, name: name, now: time.Now}
	f, created, err := l.open()
	if err != nil {
		return nil, err
	}
	l.f, l.w, l.created = f, bufio.NewWriterSize(f, 32*1024), created
	return l, nil
}

// Path is the log file's path.
func (l *File) Path() string { return filepath.Join(l.dir, l.name) }

func (l *File) open() (*os.File, bool, error) {
	d, err := safefile.OpenDir(l.dir)
	if err != nil {
		return nil, false, fmt.Errorf("open container log %s: log directory: %w", l.Path(), err)
	}
	defer d.Close()
	if err := d.MkdirAll(filepath.Dir(l.name), 0o755); err != nil {
		return nil, false, fmt.Errorf("open container log %s: %w", l.Path(), err)
	}
	f, created, err := d.CreateAppend(l.name, 0o640)
	if err != nil {
		return nil, false, fmt.Errorf("open container log %s: %w", l.Path(), err)
	}
	return f, created, nil
}

// Reopen opens the path anew and swaps the file for the new one. When
// that fails the current file is kept: the kubelet, whose rotation renamed
// it, renames it back then, and no line is lost.
func (l *File) Reopen() error {
	f, _, err := l.open()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.w.Flush()
		_ = l.f.Close()
	}
	// A reopened file is never removed by Discard: the container was
	// created long since.
	l.f, l.w, l.created = f, bufio.NewWriterSize(f, 32*1024), false
	return nil
}

// Discard closes the file and removes it if Open made it and it is still
// at its path: the undo of a create that failed later on.
func (l *File) Discard() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	var err error
	if l.created {
		var d *safefile.Dir
		if d, err = safefile.OpenDir(l.dir); err == nil {
			err = d.RemoveIfSame(l.name, l.f)
			d.Close()
		}
	}
	_ = l.f.Close()
	l.f = nil
	return err
}

// Close flushes and closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// record writes one log record; whole records are written under the lock so
// stdout and stderr never interleave inside a line.
func (l *File) record(stream string, partial bool, text []byte) error {
	tag := "F"
	if partial {
		tag = "P"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("container log %s is closed", l.Path())
	}
	ts := l.now().UTC().AppendFormat(nil, time.RFC3339Nano)
	l.w.Write(ts)
	l.w.WriteByte(' ')
	l.w.WriteString(stream)
	l.w.WriteByte(' ')
	l.w.WriteString(tag)
	l.w.WriteByte(' ')
	l.w.Write(text)
	l.w.WriteByte('\n')
	return l.w.Flush()
}

// Copy reads r until EOF and writes every line as records of stream
// ("stdout" or "stderr"). Text left without a newline at EOF is written as
// a partial (P) record, as containerd does: the kubelet then reads it back
// without a newline it never had (a FallbackToLogsOnError termination
// message of "echo -n DONE" is "DONE", not "DONE\n").
func (l *File) Copy(stream string, r io.Reader, maxLine int) error {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		partial := true
		switch {
		case err == nil:
			line, partial = dropLineEnd(line), false
		case errors.Is(err, bufio.ErrBufferFull):
			// A "\r\n" split across two reads: the '\r' goes with the
			// next read, so that the line end is dropped whole.
			if n := len(line); n > 1 && line[n-1] == '\r' {
				_ = br.UnreadByte()
				line = line[:n-1]
			}
		}
		if len(line) > 0 || !partial {
			if werr := l.record(stream, partial, line); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		default:
			return fmt.Errorf("read container %s: %w", stream, err)
		}
	}
}

// dropLineEnd drops the "\n" or "\r\n" a line ends with.
func dropLineEnd(line []byte) []byte {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// Adopt wraps a log file opened earlier (by Open, in a former image of
// this process that handed it over by execve) at name below dir.
func Adopt(dir, name string, f *os.File) *File {
	return &File{dir: dir, name: name, now: time.Now, f: f, w: bufio.NewWriterSize(f, 32*1024)}
}

// Location is the directory and the name below it that Open was given.
func (l *File) Location() (dir, name string) { return l.dir, l.name }

// FD is the descriptor of the open file (-1 when closed); records are
// flushed whole, so another writer may append after it.
func (l *File) FD() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return -1
	}
	return int(l.f.Fd())
}
