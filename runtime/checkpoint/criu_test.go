package checkpoint

import (
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for out, want := range map[string][3]int{
		"Version: 3.17.1\n":                   {3, 17, 1},
		"Version: 4.0\nGitID: v4.0-12-gabc\n": {4, 0, 0},
	} {
		v, err := ParseVersion(out)
		if err != nil || v != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", out, v, err, want)
		}
	}
	if _, err := ParseVersion("criu: command not found"); err == nil {
		t.Error("ParseVersion accepted garbage")
	}
	if !older([3]int{3, 14, 9}, MinVersion) || older([3]int{3, 17, 1}, MinVersion) {
		t.Error("version comparison wrong")
	}
}

func TestLastError(t *testing.T) {
	log := `(00.000) Version: 3.17.1
(00.010) Error (criu/proc_parse.c:12): probe failed
(00.020) Something else
(00.030) Error (criu/mount.c:1234): mnt: Mount 123 ./etc/hosts (master_id: 0 shared_id: 0) has unreachable sharing
(00.040) Unlock network
`
	if got := LastError([]byte(log)); !strings.Contains(got, "unreachable sharing") {
		t.Errorf("LastError = %q", got)
	}
	if got := LastError([]byte("one\ntwo\n")); got != "two" {
		t.Errorf("LastError without Error lines = %q", got)
	}
}

func TestDumpArgs(t *testing.T) {
	args := DumpArgs(DumpOpts{
		Pid: 42, ImagesDir: "/w/checkpoint", WorkDir: "/w", LeaveRunning: true,
		ExternalNS:     map[string]uint64{"net": 4026532000, "pid": 4026532001},
		ExternalMounts: []string{"/etc/hosts", "/data"},
	})
	s := strings.Join(args, " ")
	for _, want := range []string{
		"dump --tree 42 --images-dir /w/checkpoint --work-dir /w --log-file dump.log",
		"--leave-running",
		"--external net[4026532000]:extNetNs",
		"--external pid[4026532001]:extPidNs",
		"--external mnt[/etc/hosts]:/etc/hosts",
		"--external mnt[/data]:/data",
		"--tcp-established",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("args %q lack %q", s, want)
		}
	}
	if slices.Contains(args, "--shell-job") {
		t.Error("--shell-job without a terminal")
	}
	if s := strings.Join(DumpArgs(DumpOpts{Pid: 1}), " "); strings.Contains(s, "--leave-running") || strings.Contains(s, "--external") {
		t.Errorf("args without options: %q", s)
	}
}
