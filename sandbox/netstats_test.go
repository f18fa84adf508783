package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// inOwnNetns starts a process in a network namespace of its own (a
// loopback only), ended at cleanup.
func inOwnNetns(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	cmd := exec.Command("unshare", "--net", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	self, err := nsKeyOf("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// unshare execs sleep once it is in the new namespace.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		k, err := nsKeyOf(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		if err == nil && k != self {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never left the node's netns: %v", cmd.Process.Pid, err)
		}
	}
}

func TestNetDevOf(t *testing.T) {
	self, err := nsKeyOf("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	b, err := netDevOf(os.Getpid(), self)
	if err != nil || !strings.HasPrefix(string(b), "Inter-") {
		t.Fatalf("own net/dev: %q, %v", b, err)
	}
	if _, err := parseNetDev(b); err != nil {
		t.Fatal(err)
	}
	file, err := nsKeyOf(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := netDevOf(os.Getpid(), file); !errors.Is(err, errOtherNetns) {
		t.Fatalf("read with a key of no namespace of ours: %v, want errOtherNetns", err)
	}
	for _, pid := range []int{0, -1} {
		if _, err := netDevOf(pid, self); err == nil {
			t.Fatalf("pid %d accepted", pid)
		}
	}

	// A process that ended (a zombie: its pid still taken, so not reused
	// meanwhile) is in no namespace.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if _, rest, _ := strings.Cut(string(stat), ") "); strings.HasPrefix(rest, "Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not end", pid)
		}
	}
	_, err = netDevOf(pid, self)
	_ = cmd.Wait()
	if err == nil {
		t.Fatal("an ended process's counters read")
	}

	// A process in another namespace: its counters are read under that
	// namespace's key only.
	other := inOwnNetns(t)
	if _, err := netDevOf(other, self); !errors.Is(err, errOtherNetns) {
		t.Fatalf("process in another netns read as ours: %v", err)
	}
	key, err := nsKeyOf(fmt.Sprintf("/proc/%d/ns/net", other))
	if err != nil {
		t.Fatal(err)
	}
	b, err = netDevOf(other, key)
	if err != nil {
		t.Fatal(err)
	}
	if ifs, err := parseNetDev(b); err != nil || len(ifs) != 0 {
		t.Fatalf("a fresh netns has interfaces other than lo: %+v, %v", ifs, err)
	}
}

func TestPodInterfacesThroughAProcess(t *testing.T) {
	other := inOwnNetns(t)
	sb := &Sandbox{ID: "netstats-test", NetNS: fmt.Sprintf("/proc/%d/ns/net", other)}
	t.Cleanup(func() { forgetNetPids(nil) })
	// Our own process (the node's netns) is tried and passed over.
	ifs, err := podInterfaces(sb, []int{os.Getpid(), other})
	if err != nil || len(ifs) != 0 {
		t.Fatalf("interfaces: %+v, %v", ifs, err)
	}
	netPids.Lock()
	got := netPids.m[sb.ID]
	netPids.Unlock()
	if got != other {
		t.Fatalf("remembered pid %d, want %d", got, other)
	}
	// No process in it: the thread that joins the namespace reads the same.
	if ifs, err := podInterfaces(sb, []int{os.Getpid()}); err != nil || len(ifs) != 0 {
		t.Fatalf("fallback: %+v, %v", ifs, err)
	}
	forgetNetPids(map[string]bool{})
	netPids.Lock()
	defer netPids.Unlock()
	if len(netPids.m) != 0 {
		t.Fatalf("not forgotten: %v", netPids.m)
	}
}

// The metrics' read (usageOf) reads the cgroup once, finds the network
// through the cgroup's process, and takes no CPU sample of the stats.
func TestUsageOfLeavesCPUSamples(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a cgroup")
	}
	p := podCgroupPath("/berth-unit-"+strconv.Itoa(os.Getpid()), "usage")
	cg, err := createCgroup(p, linuxResources(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the process is gone (cleanups run last first)
		if err := deleteCgroup(p); err != nil {
			t.Error(err)
		}
		_ = deleteCgroup(path.Dir(p))
	})
	pid := inOwnNetns(t)
	if err := cg.add(pid); err != nil {
		t.Fatal(err)
	}
	sb := &Sandbox{ID: newID(), Cgroup: p, NetNS: fmt.Sprintf("/proc/%d/ns/net", pid), State: StateReady}
	t.Cleanup(func() { forgetNetPids(nil) })
	prev := cpuSample{at: time.Now().Add(-time.Hour), usage: 1}
	samples.Lock()
	samples.m[sb.ID] = prev
	samples.Unlock()
	t.Cleanup(func() {
		samples.Lock()
		delete(samples.m, sb.ID)
		samples.Unlock()
	})

	st := usageOf(sb)
	if st.Usage == nil || !slices.Contains(st.Usage.Pids, pid) || st.Network == nil || st.CPU != nil {
		t.Fatalf("usage %+v, network %+v, cpu %+v", st.Usage, st.Network, st.CPU)
	}
	samples.Lock()
	got := samples.m[sb.ID]
	samples.Unlock()
	if got != prev {
		t.Fatalf("usageOf moved the CPU sample: %+v, was %+v", got, prev)
	}
	netPids.Lock()
	np := netPids.m[sb.ID]
	netPids.Unlock()
	if np != pid {
		t.Fatalf("network not read through pid %d (remembered %d)", pid, np)
	}
	if st := statsOf(sb); st.CPU == nil || st.Processes == nil || *st.Processes != 1 || st.Network == nil {
		t.Fatalf("stats %+v", st)
	}
	samples.Lock()
	got = samples.m[sb.ID]
	samples.Unlock()
	if got == prev {
		t.Fatal("statsOf took no CPU sample")
	}
}
