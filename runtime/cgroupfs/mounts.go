package cgroupfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// cgroupMount is a cgroup or cgroup2 line of /proc/self/mountinfo.
type cgroupMount struct {
	mountpoint, fsType, superOptions string
}

// cgroupMounts reads the cgroup mounts of /proc/self/mountinfo. A node's
// mount table grows with its pods (overlays, pins, /dev/shm): read with
// moby/sys/mountinfo it left about 400 KB of garbage in each pod's shim,
// which seldom collects, so lines are looked at in place and only the
// few cgroup ones are copied.
func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseCgroupMounts(f)
}

func parseCgroupMounts(r io.Reader) ([]cgroupMount, error) {
	br := bufio.NewReaderSize(r, 4096)
	var out []cgroupMount
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			continue
		}
		if long != nil {
			line, long = append(long, line...), nil
		}
		if len(line) > 0 {
			m, ok, perr := parseMountLine(bytes.TrimSuffix(line, []byte{'\n'}))
			if perr != nil {
				return nil, perr
			}
			if ok {
				out = append(out, m)
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// parseMountLine reads "id parent major:minor root mountpoint options
// [optional fields] - fstype source superoptions"; ok is false for a mount
// of another filesystem type. Nothing is allocated for such a line.
func parseMountLine(line []byte) (m cgroupMount, ok bool, err error) {
	sep := bytes.Index(line, []byte(" - "))
	if sep < 0 {
		return m, false, fmt.Errorf("mountinfo line without separator: %q", line)
	}
	fsType, source, super := field(line[sep+3:], 0), field(line[sep+3:], 1), field(line[sep+3:], 2)
	if fsType == nil || source == nil || super == nil {
		return m, false, fmt.Errorf("mountinfo line too short: %q", line)
	}
	switch {
	case bytes.Equal(fsType, []byte("cgroup")):
		m.fsType = "cgroup"
	case bytes.Equal(fsType, []byte("cgroup2")):
		m.fsType = "cgroup2"
	default:
		return m, false, nil
	}
	mountpoint := field(line[:sep], 4)
	if mountpoint == nil {
		return m, false, fmt.Errorf("mountinfo line too short: %q", line)
	}
	m.mountpoint, m.superOptions = unescape(mountpoint), string(super)
	return m, true, nil
}

// field returns the n-th (from 0) space-separated field of b, or nil.
func field(b []byte, n int) []byte {
	for {
		b = bytes.TrimLeft(b, " ")
		if len(b) == 0 {
			return nil
		}
		end := bytes.IndexByte(b, ' ')
		if end < 0 {
			end = len(b)
		}
		if n == 0 {
			return b[:end]
		}
		b, n = b[end:], n-1
	}
}

// unescape undoes the kernel's octal escapes (\040 for a space) in a path.
func unescape(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) {
			if v, err := strconv.ParseUint(string(b[i+1:i+4]), 8, 8); err == nil {
				out = append(out, byte(v))
				i += 3
				continue
			}
		}
		out = append(out, b[i])
	}
	return string(out)
}
