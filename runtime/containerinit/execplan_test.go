package containerinit

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestExecPlanLayout(t *testing.T) {
	umask, oom := uint32(0o22), -5
	p := &specs.Process{
		Args: []string{"sh", "-c", "x"}, Env: []string{"A=1"}, Cwd: "/w",
		User: specs.User{UID: 7, GID: 8, AdditionalGids: []uint32{9}, Umask: &umask},
		Capabilities: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_CHOWN", "CAP_KILL", "CAP_FROM_THE_FUTURE"}, Effective: []string{"CAP_KILL"},
		},
		NoNewPrivileges: true, OOMScoreAdj: &oom,
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}},
	}
	b, err := ExecPlan(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("berthx01")) || int(binary.LittleEndian.Uint32(b[8:])) != len(b)-12 {
		t.Fatalf("bad head % x", b[:12])
	}
	body := b[12:]
	u64 := func(i int) uint64 { return binary.LittleEndian.Uint64(body[i:]) }
	u32 := func(i int) uint32 { return binary.LittleEndian.Uint32(body[i:]) }
	// An unknown capability is left out, as the Go init does.
	if u64(0) != 1<<0|1<<5 || u64(8) != 1<<5 || u64(16) != 0 || u64(24) != 0 || u64(32) != 0 {
		t.Errorf("capability masks %x %x %x %x %x", u64(0), u64(8), u64(16), u64(24), u64(32))
	}
	if u32(40) != 7 || u32(44) != 8 || u32(48) != planUmask|planNNP|planOOM|planSeccomp || u32(52) != 0o22 || int32(u32(56)) != -5 {
		t.Errorf("ids, flags, umask, oom: % x", body[40:60])
	}
	if u32(60) != 1 || u32(64) != 9 || u32(68) != 1 || u32(72) != 7 /* RLIMIT_NOFILE */ || u64(76) != 10 || u64(84) != 20 {
		t.Errorf("groups and rlimits: % x", body[60:92])
	}
	if rest := string(body[92:]); rest != "/w\x00\x03\x00\x00\x00sh\x00-c\x00x\x00\x01\x00\x00\x00A=1\x00" {
		t.Errorf("strings %q", rest)
	}
}

func TestExecPlanRefuses(t *testing.T) {
	for name, p := range map[string]*specs.Process{
		"no args":        {},
		"terminal":       {Args: []string{"sh"}, Terminal: true},
		"NUL in an arg":  {Args: []string{"a\x00b"}},
		"NUL in env":     {Args: []string{"a"}, Env: []string{"A=\x00"}},
		"unknown rlimit": {Args: []string{"a"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOPE"}}},
	} {
		if _, err := ExecPlan(p, false); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "unknown rlimit" && !strings.Contains(err.Error(), "RLIMIT_NOPE") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// berth-mon puts an exec's args between the parts of its container's
// process: that must be the plan ExecPlan encodes.
func TestExecPlanParts(t *testing.T) {
	p := &specs.Process{Args: []string{"sh", "-c", "echo a b"}, Env: []string{"PATH=/bin", "X=y z"}, Cwd: "/tmp",
		User: specs.User{UID: 5, GID: 6, AdditionalGids: []uint32{7}}, NoNewPrivileges: true}
	want, err := ExecPlan(p, true)
	if err != nil {
		t.Fatal(err)
	}
	head, env, err := ExecPlanParts(p, true)
	if err != nil {
		t.Fatal(err)
	}
	body := append([]byte(nil), head...)
	body = binary.LittleEndian.AppendUint32(body, uint32(len(p.Args)))
	for _, a := range p.Args {
		body = append(append(body, a...), 0)
	}
	body = append(body, env...)
	got := append([]byte("berthx01"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	if got = append(got, body...); !bytes.Equal(got, want) {
		t.Errorf("parts with the args:\n%q\nExecPlan:\n%q", got, want)
	}
	if !bytes.HasSuffix(head, []byte("/tmp\x00")) {
		t.Errorf("head does not end with the cwd: %q", head)
	}
	p.Env = append(p.Env, "BAD=\x00")
	if _, _, err := ExecPlanParts(p, true); err == nil {
		t.Error("an env var with a NUL was taken")
	}
}
