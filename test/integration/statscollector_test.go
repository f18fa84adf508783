package integration

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// newCollectEnv is newCtrEnv with berthd's stats collector reading every
// second.
func newCollectEnv(t *testing.T) *ctrEnv {
	t.Helper()
	return newCtrEnvWith(t, func(string) string { return "stats_collect_period = \"1s\"\n" })
}

func (e *ctrEnv) listPodStats(t *testing.T) map[string]*runtimeapi.PodSandboxStats {
	t.Helper()
	resp, err := e.d.Runtime.ListPodSandboxStats(framework.Context(t), &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxStats: %v", err)
	}
	out := map[string]*runtimeapi.PodSandboxStats{}
	for _, s := range resp.Stats {
		out[s.Attributes.Id] = s
	}
	return out
}

func (e *ctrEnv) listCtrStats(t *testing.T) map[string]*runtimeapi.ContainerStats {
	t.Helper()
	resp, err := e.d.Runtime.ListContainerStats(framework.Context(t), &runtimeapi.ListContainerStatsRequest{})
	if err != nil {
		t.Fatalf("ListContainerStats: %v", err)
	}
	out := map[string]*runtimeapi.ContainerStats{}
	for _, s := range resp.Stats {
		out[s.Attributes.Id] = s
	}
	return out
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// pollStats retries check every 100 ms until it holds; the bound is on a
// hang, not a claim on speed.
func pollStats(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStatsCollector(t *testing.T) {
	e := newCollectEnv(t)
	ctx := framework.Context(t)
	// grow fills 24 MiB of its pod's /dev/shm (a tmpfs: charged to its
	// cgroup) once told to.
	podA, cfgA := e.pod(t, "collect-a")
	grow := e.run(t, podA, cfgA, ctrConfig("grow", "sh", "-c",
		"while [ ! -e /tmp/go ]; do sleep 0.1; done; head -c 25165824 /dev/zero >/dev/shm/fill; sleep 100000"))
	podB, cfgB := e.pod(t, "collect-b")
	idle := e.run(t, podB, cfgB, ctrConfig("idle", "sleep", "100000"))

	// Both pods and containers listed, with the values the single-item
	// calls read: the same attributes, cumulative CPU no later than theirs.
	pods, ctrs := e.listPodStats(t), e.listCtrStats(t)
	if !sameSet(keysOf(pods), podA, podB) || !sameSet(keysOf(ctrs), grow, idle) {
		t.Fatalf("listed pods %v containers %v, want %v and %v", keysOf(pods), keysOf(ctrs), []string{podA, podB}, []string{grow, idle})
	}
	for _, id := range []string{podA, podB} {
		resp, err := e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: id})
		if err != nil {
			t.Fatal(err)
		}
		one, l := resp.Stats.Linux, pods[id].Linux
		if pods[id].Attributes.Metadata.Name != resp.Stats.Attributes.Metadata.Name || l.GetMemory().GetWorkingSetBytes().GetValue() == 0 ||
			l.GetCpu().GetUsageCoreNanoSeconds().GetValue() > one.GetCpu().GetUsageCoreNanoSeconds().GetValue() ||
			l.GetCpu().GetTimestamp() > one.GetCpu().GetTimestamp() || len(l.Containers) != 1 || len(one.Containers) != 1 ||
			l.Containers[0].Attributes.Id != one.Containers[0].Attributes.Id || ifaceUsage(pods[id], "eth0") == nil {
			t.Errorf("pod %s listed %v, alone %v", id, pods[id], resp.Stats)
		}
	}
	for _, id := range []string{grow, idle} {
		resp, err := e.d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		one, l := resp.Stats, ctrs[id]
		if l.Attributes.Metadata.Name != one.Attributes.Metadata.Name || l.Attributes.Labels["ctr"] != one.Attributes.Labels["ctr"] ||
			l.GetMemory().GetWorkingSetBytes().GetValue() == 0 || l.GetCpu().GetUsageCoreNanoSeconds().GetValue() > one.GetCpu().GetUsageCoreNanoSeconds().GetValue() ||
			l.GetCpu().GetTimestamp() > one.GetCpu().GetTimestamp() || l.WritableLayer.FsId.Mountpoint != one.WritableLayer.FsId.Mountpoint {
			t.Errorf("container %s listed %v, alone %v", id, l, one)
		}
	}

	// Calls in a row answer from one sample: the same read times (a
	// read in each call would give each its own).
	pollStats(t, "two lists with one sample", func() bool {
		a, b := e.listPodStats(t)[podA], e.listPodStats(t)[podA]
		c, d := e.listCtrStats(t)[grow], e.listCtrStats(t)[grow]
		return a.Linux.Cpu.Timestamp == b.Linux.Cpu.Timestamp && c.Cpu.Timestamp == d.Cpu.Timestamp
	})
	// With no call in between, the background rounds read again: a list
	// after a pause shows values read during it.
	pollStats(t, "values read between two lists", func() bool {
		first := time.Now()
		e.listPodStats(t)
		e.listCtrStats(t)
		done := time.Now()
		time.Sleep(2500 * time.Millisecond)
		asked := time.Now()
		ps, cs := e.listPodStats(t)[podA], e.listCtrStats(t)[grow]
		p, c := time.Unix(0, ps.Linux.Cpu.Timestamp), time.Unix(0, cs.Cpu.Timestamp)
		if p.Before(first) || c.Before(first) {
			t.Fatalf("listed values read at %v and %v, before the list at %v", p, c, first)
		}
		return p.After(done) && p.Before(asked) && c.After(done) && c.Before(asked)
	})

	// A pod made after the last round is listed at once, with its
	// container; a removed one is not.
	podC, cfgC := e.pod(t, "collect-c")
	ctrC := e.run(t, podC, cfgC, busyConfig("new"))
	removePod(t, e.d, podB)
	pods, ctrs = e.listPodStats(t), e.listCtrStats(t)
	if !sameSet(keysOf(pods), podA, podC) || !sameSet(keysOf(ctrs), grow, ctrC) {
		t.Fatalf("after making %s and removing %s: pods %v containers %v", podC, podB, keysOf(pods), keysOf(ctrs))
	}
	if pods[podC].Linux.GetCpu() == nil || len(pods[podC].Linux.Containers) != 1 || ctrs[ctrC].GetMemory() == nil {
		t.Errorf("new pod's stats: %v, its container's %v", pods[podC], ctrs[ctrC])
	}

	// The rounds' reads are CPU samples: the new container's rate (it
	// burns a fifth of a core) shows in the lists, within its quota.
	pollStats(t, "the new container's CPU rate", func() bool {
		cs, ps := e.listCtrStats(t)[ctrC], e.listPodStats(t)[podC]
		nc, pnc := cs.GetCpu().GetUsageNanoCores().GetValue(), ps.GetLinux().GetCpu().GetUsageNanoCores().GetValue()
		if nc > 600_000_000 || pnc > 600_000_000 {
			t.Fatalf("nano cores of a container capped at 0.2 cores: %d, its pod's %d", nc, pnc)
		}
		return nc > 0 && pnc > 0
	})

	// grow's working set, and its pod's, rise in a later list once a
	// round has read them.
	before, podBefore := ctrs[grow].Memory.WorkingSetBytes.Value, pods[podA].Linux.Memory.WorkingSetBytes.Value
	stamp := ctrs[grow].Memory.Timestamp
	e.execSync(t, grow, "touch", "/tmp/go")
	const grown = 16 << 20
	pollStats(t, "grow's working set to rise", func() bool {
		cs, ps := e.listCtrStats(t)[grow], e.listPodStats(t)[podA]
		return cs.Memory.WorkingSetBytes.Value >= before+grown && ps.Linux.Memory.WorkingSetBytes.Value >= podBefore+grown &&
			cs.Memory.Timestamp > stamp
	})
	t.Logf("grow's working set rose from %d", before)
}
