package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// newMetricsEnv is newCtrEnv with berthd's Prometheus endpoint on a free
// loopback port; it returns the env and the endpoint's URL.
func newMetricsEnv(t *testing.T) (*ctrEnv, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// -v 4: TestPodSandboxStatsAndMetrics tells from the log how a pod's
	// network counters were read.
	e := newCtrEnvWith(t, func(string) string { return fmt.Sprintf("metrics_address = %q\n", addr) }, "-v", "4")
	return e, "http://" + addr + "/metrics"
}

// busyConfig burns a fifth of a core (its CPU quota) until stopped.
func busyConfig(name string) *runtimeapi.ContainerConfig {
	cfg := ctrConfig(name, "sh", "-c", "while :; do :; done")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000}
	return cfg
}

func ifaceUsage(ps *runtimeapi.PodSandboxStats, name string) *runtimeapi.NetworkInterfaceUsage {
	for _, i := range ps.GetLinux().GetNetwork().GetInterfaces() {
		if i.Name == name {
			return i
		}
	}
	return nil
}

func TestPodSandboxStatsAndMetrics(t *testing.T) {
	e, metricsURL := newMetricsEnv(t)
	ctx := framework.Context(t)
	podID, podCfg := e.pod(t, "stats")
	ctrID := e.run(t, podID, podCfg, busyConfig("busy"))
	info := inspectPod(t, e.d, podID)

	// CPU and memory of the pod and its container become non-zero, and the
	// second sample has a rate.
	var ps *runtimeapi.PodSandboxStats
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
		if err != nil {
			t.Fatalf("PodSandboxStats: %v", err)
		}
		ps = resp.Stats
		l := ps.GetLinux()
		if l.GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 && l.GetCpu().GetUsageNanoCores().GetValue() > 0 &&
			l.GetMemory().GetWorkingSetBytes().GetValue() > 0 && len(l.GetContainers()) == 1 &&
			l.GetContainers()[0].GetCpu().GetUsageNanoCores().GetValue() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for the pod's CPU, memory and container stats: still empty: %v", ps)
		}
		time.Sleep(500 * time.Millisecond)
	}
	l := ps.Linux
	if ps.Attributes.Id != podID || ps.Attributes.Metadata.Name != "stats" || ps.Attributes.Labels["app"] != "stats" {
		t.Errorf("attributes: %v", ps.Attributes)
	}
	if l.Containers[0].Attributes.Id != ctrID {
		t.Errorf("container stats of %s, want %s", l.Containers[0].Attributes.Id, ctrID)
	}
	// The container is capped at 0.2 cores; the pod's rate is about that.
	if nc := l.Cpu.UsageNanoCores.Value; nc > 600_000_000 {
		t.Errorf("pod uses %d nano cores, more than its container's quota allows", nc)
	}
	if l.Memory.UsageBytes.GetValue() < l.Memory.WorkingSetBytes.GetValue() || l.Memory.RssBytes == nil || l.Memory.PageFaults.GetValue() == 0 {
		t.Errorf("memory: %v", l.Memory)
	}
	// The shim and the container's shell at least.
	if n := l.GetProcess().GetProcessCount().GetValue(); n < 2 {
		t.Errorf("process count %d", n)
	}

	// Network counters of eth0 grow with traffic into the pod.
	before := ifaceUsage(ps, "eth0")
	if before == nil || l.Network.DefaultInterface.GetName() != "eth0" {
		t.Fatalf("no eth0 in %v", l.Network)
	}
	lis := listenIn(t, info.NetNS, "0.0.0.0:0", strings.Repeat("x", 60))
	port := lis.Addr().(*net.TCPAddr).Port
	podIP := info.status.GetNetwork().GetIp()
	for range 5 {
		if _, err := readFrom(func() (net.Conn, error) { return net.Dial("tcp4", net.JoinHostPort(podIP, fmt.Sprint(port))) }); err != nil {
			t.Fatalf("talk to the pod: %v", err)
		}
	}
	resp, err := e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	after := ifaceUsage(resp.Stats, "eth0")
	if after.RxBytes.Value <= before.RxBytes.Value || after.TxBytes.Value < before.TxBytes.Value+5*60 {
		t.Errorf("eth0 counters did not grow with traffic: before %v after %v", before, after)
	}
	// Those came from /proc/<pid>/net/dev of the container's process; a pod
	// with no process in its netns has them read from inside the netns.
	const fallback = "No process in the pod's netns"
	if strings.Contains(e.d.Logs(), fallback) {
		t.Errorf("counters of pod %s (a container running) read from inside its netns:\n%s", podID, e.d.Logs())
	}

	// Filters of ListPodSandboxStats and the stream.
	other, _ := e.pod(t, "idle")
	resp, err = e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: other})
	if err != nil {
		t.Fatal(err)
	}
	if ifaceUsage(resp.Stats, "eth0") == nil {
		t.Errorf("no eth0 counters of pod %s, which has no container: %v", other, resp.Stats.GetLinux().GetNetwork())
	}
	if !slices.ContainsFunc(strings.Split(e.d.Logs(), "\n"), func(l string) bool { return strings.Contains(l, fallback) && strings.Contains(l, other) }) {
		t.Errorf("counters of pod %s (no container) not read from inside its netns", other)
	}
	for _, tc := range []struct {
		filter *runtimeapi.PodSandboxStatsFilter
		want   []string
	}{
		{nil, []string{podID, other}},
		{&runtimeapi.PodSandboxStatsFilter{Id: podID}, []string{podID}},
		{&runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "idle"}}, []string{other}},
		{&runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "none"}}, nil},
	} {
		resp, err := e.d.Runtime.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: tc.filter})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range resp.Stats {
			got = append(got, s.Attributes.Id)
		}
		if !sameSet(got, tc.want...) {
			t.Errorf("filter %v: got %v, want %v", tc.filter, got, tc.want)
		}
		stream, err := e.d.Runtime.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: tc.filter})
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range m.PodSandboxStats {
				got = append(got, s.Attributes.Id)
			}
		}
		if !sameSet(got, tc.want...) {
			t.Errorf("stream filter %v: got %v, want %v", tc.filter, got, tc.want)
		}
	}
	if _, err := e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nosuchpod"}); grpcCode(err) != codes.NotFound {
		t.Errorf("stats of an unknown pod: %v, want NotFound", err)
	}
	if _, err := e.d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{}); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("stats without an id: %v, want InvalidArgument", err)
	}

	// The cAdvisor-style metrics: every metric has a descriptor and one
	// value per label key.
	descs, err := e.d.Runtime.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, d := range descs.Descriptors {
		keys[d.Name] = len(d.LabelKeys)
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_memory_usage_bytes", "container_network_receive_bytes_total", "container_network_transmit_bytes_total"} {
		if _, ok := keys[name]; !ok {
			t.Errorf("no descriptor %s", name)
		}
	}
	pm, err := e.d.Runtime.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]uint64{}
	check := func(ms []*runtimeapi.Metric, prefix string) {
		for _, m := range ms {
			n, ok := keys[m.Name]
			if !ok || len(m.LabelValues) != n {
				t.Errorf("metric %s: %d label values, descriptor has %d (known %v)", m.Name, len(m.LabelValues), n, ok)
			}
			if m.Name == "container_network_receive_bytes_total" || m.Name == "container_network_transmit_bytes_total" {
				values[prefix+m.Name+"/"+m.LabelValues[len(m.LabelValues)-1]] = m.Value.GetValue()
			} else {
				values[prefix+m.Name] = m.Value.GetValue()
			}
		}
	}
	var seen bool
	for _, p := range pm.PodMetrics {
		if p.PodSandboxId != podID {
			continue
		}
		seen = true
		check(p.Metrics, "pod/")
		for _, c := range p.ContainerMetrics {
			if c.ContainerId == ctrID {
				check(c.Metrics, "ctr/")
			}
		}
	}
	if !seen {
		t.Fatalf("no metrics of pod %s: %v", podID, pm)
	}
	for _, k := range []string{"pod/container_network_receive_bytes_total/eth0", "pod/container_network_transmit_bytes_total/eth0", "ctr/container_memory_working_set_bytes", "ctr/container_memory_usage_bytes", "pod/container_memory_working_set_bytes"} {
		if values[k] == 0 {
			t.Errorf("metric %s is %d", k, values[k])
		}
	}
	for _, k := range []string{"ctr/container_threads", "ctr/container_file_descriptors", "ctr/container_processes", "ctr/container_cpu_cfs_periods_total", "ctr/container_fs_inodes_free", "pod/container_processes"} {
		if values[k] == 0 {
			t.Errorf("metric %s is 0", k)
		}
	}
	if values["ctr/container_spec_cpu_quota"] != 20000 || values["ctr/container_spec_cpu_period"] != 100000 {
		t.Errorf("spec CPU metrics: quota %d period %d", values["ctr/container_spec_cpu_quota"], values["ctr/container_spec_cpu_period"])
	}
	if _, ok := values["ctr/container_cpu_usage_seconds_total"]; !ok {
		t.Errorf("no container CPU metric: %v", values)
	}

	// The Prometheus endpoint counts the calls above, the failed ones by
	// code, the pull, and the pods and containers by state.
	hr, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	for _, want := range []string{
		`berth_cri_requests_total{code="OK",method="PodSandboxStats"}`,
		`berth_cri_errors_total{code="NotFound",method="PodSandboxStats"} 1`,
		`berth_cri_errors_total{code="InvalidArgument",method="PodSandboxStats"} 1`,
		`berth_cri_request_duration_seconds_count{method="ListPodSandboxStats"} 4`,
		`berth_cri_requests_total{code="OK",method="StreamPodSandboxStats"} 4`,
		`berth_image_pull_duration_seconds_count 1`,
		`berth_pods{state="ready"} 2`,
		`berth_containers{state="running"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(string(body), "berth_image_pull_bytes_total ") || strings.Contains(string(body), "berth_image_pull_bytes_total 0\n") {
		t.Errorf("/metrics: no pulled bytes")
	}
	t.Logf("pod cpu %d ns (%d nano cores), working set %d, processes %d, eth0 %v -> %v; metrics %v",
		l.Cpu.UsageCoreNanoSeconds.Value, l.Cpu.UsageNanoCores.Value, l.Memory.WorkingSetBytes.Value,
		l.Process.ProcessCount.Value, before, after, values)
	if t.Failed() {
		t.Log(string(body))
	}
}
