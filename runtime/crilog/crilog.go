// Package crilog writes container output in the CRI log format the kubelet
// parses: "<RFC3339Nano> <stdout|stderr> <P|F> <text>\n". A line longer than
// the buffer is split into partial (P) records ending with a full (F) one.
package crilog

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// DefaultMaxLine is the longest record written before a line is split, as
// containerd does (16 KiB).
const DefaultMaxLine = 16 * 1024

// File is a CRI log file shared by a container's stdout and stderr copiers.
// Reopen swaps the file after the kubelet rotated it.
type File struct {
	path string
	now  func() time.Time

	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

// Open opens (creating, appending) the log file at path.
func Open(path string) (*File, error) {
	l := &File{path: path, now: time.Now}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open container log %s: %w", l.path, err)
	}
	l.f, l.w = f, bufio.NewWriterSize(f, 32*1024)
	return nil
}

// Reopen closes the current file and opens the path anew.
func (l *File) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.w.Flush()
		_ = l.f.Close()
		l.f = nil
	}
	return l.open()
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
		return fmt.Errorf("container log %s is closed", l.path)
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
// a full record so nothing is lost when the container exits mid-line.
func (l *File) Copy(stream string, r io.Reader, maxLine int) error {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			if werr := l.record(stream, isPrefix, line); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read container %s: %w", stream, err)
		}
	}
}
