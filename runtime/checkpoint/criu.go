package checkpoint

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-dev/berth/errdefs"
)

// MinVersion is the oldest CRIU berth uses: 3.15 brought external PID
// namespaces (--external pid[...]), which a pod that shares its PID
// namespace needs.
var MinVersion = [3]int{3, 15, 0}

// DumpLog is CRIU's log of a dump, in the dump's work dir (and the archive).
const DumpLog = "dump.log"

var versionRE = regexp.MustCompile(`(?m)^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads `criu --version`'s output.
func ParseVersion(out string) ([3]int, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return [3]int{}, fmt.Errorf("no version in %q", strings.TrimSpace(out))
	}
	var v [3]int
	for i := range 3 {
		if m[i+1] != "" {
			v[i], _ = strconv.Atoi(m[i+1])
		}
	}
	return v, nil
}

func older(a, b [3]int) bool {
	for i := range 3 {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func versionString(v [3]int) string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// checked remembers the criu binary (path, size and mtime) that passed
// Check: `criu check` probes the kernel at length (a minute under
// emulation), and neither the kernel nor that binary changes meanwhile.
var checked struct {
	sync.Mutex
	path string
	id   [2]int64
}

func binaryID(path string) [2]int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return [2]int64{}
	}
	return [2]int64{fi.Size(), fi.ModTime().UnixNano()}
}

// Check finds CRIU and makes sure it can checkpoint here: new enough and
// `criu check` content with this kernel. Every refusal wraps
// ErrFailedPrecondition and names the version. A failure is not
// remembered: installing CRIU needs no restart of berthd.
func Check(ctx context.Context) (string, error) {
	path, err := exec.LookPath("criu")
	if err != nil {
		return "", fmt.Errorf("checkpoint needs CRIU %s or newer, and criu is not installed (not in PATH): %w", versionString(MinVersion), errdefs.ErrFailedPrecondition)
	}
	checked.Lock()
	defer checked.Unlock()
	if id := binaryID(path); checked.path == path && checked.id == id && id != ([2]int64{}) {
		return path, nil
	}
	if err := check(ctx, path); err != nil {
		return "", err
	}
	checked.path, checked.id = path, binaryID(path)
	return path, nil
}

func check(ctx context.Context, path string) error {
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %v: %s: %w", path, err, lastLine(out), errdefs.ErrFailedPrecondition)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return fmt.Errorf("%s --version: %v: %w", path, err, errdefs.ErrFailedPrecondition)
	}
	if older(v, MinVersion) {
		return fmt.Errorf("CRIU %s at %s is too old: checkpoint needs %s or newer: %w", versionString(v), path, versionString(MinVersion), errdefs.ErrFailedPrecondition)
	}
	out, err = exec.CommandContext(ctx, path, "check").CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("criu check: %w", ctx.Err())
		}
		why := Errors(out)
		return fmt.Errorf("CRIU %s cannot checkpoint on this kernel (%s): criu check: %s: %w", versionString(v), kernel(), why, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown kernel"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// LastError is the last "Error" line of a CRIU log (the first error is
// often a consequence-free probe; the last is what made CRIU give up), or
// its last line when none says Error.
func LastError(log []byte) string {
	var last string
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Error") {
			last = sc.Text()
		}
	}
	if last == "" {
		return lastLine(log)
	}
	return strings.TrimSpace(last)
}

// Errors is what a CRIU log says went wrong: its first error line (the
// cause) and its last (what gave up) when they differ.
func Errors(log []byte) string {
	last, first := LastError(log), FirstError(log)
	if first == last {
		return last
	}
	return first + " ... " + last
}

// FirstError is the first "Error" line of CRIU's output: for `criu check`
// the cause, where the last says what gave up.
func FirstError(out []byte) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "Error") {
			return strings.TrimSpace(l)
		}
	}
	return LastError(out)
}

// DumpOpts say what CRIU dumps and how.
type DumpOpts struct {
	Pid       int
	ImagesDir string
	WorkDir   string // CRIU's log lands here (DumpLog)
	// LeaveRunning resumes the process after the dump (else CRIU kills it).
	LeaveRunning bool
	ShellJob     bool // the process has a terminal
	// ExternalNS are namespaces CRIU does not dump (the pod's, shared
	// with other processes): kind ("net" or "pid") to inode.
	ExternalNS map[string]uint64
	// ExternalMounts are mount points (container paths) whose content is
	// not the container's: bind mounts of node dirs and files.
	ExternalMounts []string
	// ExternalFiles are CRIU keys (file[mnt_id:inode]) of open files on
	// mounts the container does not see: its stdio from the shim.
	ExternalFiles []string
}

// extNSKey names an external namespace in the images, as runc and CRI-O do.
func extNSKey(kind string) string {
	return "ext" + strings.ToUpper(kind[:1]) + kind[1:] + "Ns"
}

// DumpArgs are the arguments of `criu dump` for o.
func DumpArgs(o DumpOpts) []string {
	args := []string{"dump",
		"--tree", strconv.Itoa(o.Pid),
		"--images-dir", o.ImagesDir,
		"--work-dir", o.WorkDir,
		"--log-file", DumpLog, "-v4",
		// What a container commonly holds: open TCP connections, file
		// locks, unlinked open files, unix sockets to outside.
		"--tcp-established", "--file-locks", "--link-remap", "--ext-unix-sk",
		"--manage-cgroups",
	}
	if o.LeaveRunning {
		args = append(args, "--leave-running")
	}
	if o.ShellJob {
		args = append(args, "--shell-job")
	}
	for _, kind := range []string{"net", "pid"} { // the only kinds CRIU takes as external
		if ino, ok := o.ExternalNS[kind]; ok {
			args = append(args, "--external", fmt.Sprintf("%s[%d]:%s", kind, ino, extNSKey(kind)))
		}
	}
	for _, m := range o.ExternalMounts {
		args = append(args, "--external", "mnt["+m+"]:"+m)
	}
	for _, f := range o.ExternalFiles {
		args = append(args, "--external", f)
	}
	return args
}

// DumpCommand is the `criu dump` command for o (criu is Check's path).
// Its caller starts and waits for it; CRIU's output goes to its log, and
// what it says before opening the log to out.
func DumpCommand(criu string, o DumpOpts, out *os.File) *exec.Cmd {
	cmd := exec.Command(criu, DumpArgs(o)...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd
}

// DumpError explains a failed dump by the last error of CRIU's log (or of
// its output, when it did not get as far as the log); it wraps
// ErrFailedPrecondition.
func DumpError(o DumpOpts, failure error, output []byte) error {
	why := lastLine(output)
	if log, rerr := os.ReadFile(filepath.Join(o.WorkDir, DumpLog)); rerr == nil && len(log) > 0 {
		why = Errors(log)
	} else if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		why += fmt.Sprintf(" (log: %v)", rerr)
	}
	if why == "" {
		why = failure.Error()
	}
	return fmt.Errorf("criu dump of pid %d failed: %s: %w", o.Pid, why, errdefs.ErrFailedPrecondition)
}
