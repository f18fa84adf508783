package framework

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// tailLines is how much of a log a failed test prints; the whole log
// stays in its file.
const tailLines = 80

// LogDir is where the logs of the processes a test starts are kept:
// $BERTH_TEST_LOG_DIR/<test>, else _output/test-logs/<test> in the
// checkout. A test's dir is emptied when its first log opens, so it holds
// the last run only.
func LogDir(t testing.TB) string {
	root := os.Getenv("BERTH_TEST_LOG_DIR")
	if root == "" {
		root = filepath.Join(RepoRoot(), "_output", "test-logs")
	}
	return filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
}

var (
	logDirsMu sync.Mutex
	logDirs   = map[string]bool{} // test log dirs emptied by this run
)

// TestLog is the output of a process a test started (berthd, the kubelet):
// kept in memory for failure messages and written as it comes to a file in
// LogDir, which outlives a test binary killed by its -timeout. When the
// test fails, the log's tail and the file's path are printed; when it
// passes the file goes, unless BERTH_KEEP_TEST_LOGS is set.
type TestLog struct {
	name string
	path string // "" when the file could not be made

	mu  sync.Mutex
	buf bytes.Buffer
	f   *os.File
}

// NewTestLog opens the log of name ("berthd", "kubelet"); a second log of
// the same name in a test (a restarted berthd) gets a numbered file.
func NewTestLog(t testing.TB, name string) *TestLog {
	t.Helper()
	l := &TestLog{name: name}
	dir := LogDir(t)
	logDirsMu.Lock()
	if !logDirs[dir] {
		logDirs[dir] = true
		_ = os.RemoveAll(dir)
	}
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		for i := 1; ; i++ {
			p := filepath.Join(dir, name+".log")
			if i > 1 {
				p = filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, i))
			}
			l.f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if !os.IsExist(err) {
				l.path = p
				break
			}
		}
	}
	logDirsMu.Unlock()
	if err != nil {
		l.f, l.path = nil, ""
		t.Logf("%s's log is kept in memory only: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last %d lines of %s's log (all of it: %s):\n%s", tailLines, name, l.where(), l.Tail(tailLines))
		}
		l.close(!t.Failed() && os.Getenv("BERTH_KEEP_TEST_LOGS") == "")
	})
	return l
}

func (l *TestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_, _ = l.f.Write(p)
	}
	return l.buf.Write(p)
}

// String is all of the log so far.
func (l *TestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Tail is the last n lines of the log so far.
func (l *TestLog) Tail(n int) string {
	s := strings.TrimRight(l.String(), "\n")
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if n--; n == 0 {
				return "...\n" + s[i+1:]
			}
		}
	}
	return s
}

func (l *TestLog) where() string {
	if l.path == "" {
		return "not kept in a file"
	}
	return l.path
}

// close closes the file, and removes it (and the test's dir, once empty)
// when asked.
func (l *TestLog) close(remove bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
	if remove {
		_ = os.Remove(l.path)
		_ = os.Remove(filepath.Dir(l.path))
	}
}
