package cri

import (
	"context"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/metrics"
	"github.com/berth-dev/berth/imageservice"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/usage"
	"github.com/berth-dev/berth/sandbox"
)

// observePull records a successful pull's time and its image's size.
func observePull(svc *imageservice.Service, id string, d time.Duration) {
	var size uint64
	if img, err := svc.Resolve(context.Background(), id); err == nil {
		size = img.Size
	}
	metrics.ObservePull(d, size)
}

// The cAdvisor-style metrics the kubelet serves on /metrics/cadvisor when
// it takes pod and container stats from the CRI (PodAndContainerStatsFromCRI),
// as critest expects them. Every metric carries the labels cAdvisor gives a
// container; some add their own. A pod's own metrics are those of its
// cgroup (cAdvisor's pod-level container, name "") and of its network
// (cAdvisor's "POD" container). Times are whole seconds: a CRI metric is an
// integer.
var (
	containerLabels = []string{"container", "id", "image", "name", "namespace", "pod"}
	plus            = func(extra ...string) []string { return append(append([]string{}, containerLabels...), extra...) }
)

type metricDesc struct {
	name, help string
	labels     []string
	kind       runtimeapi.MetricType
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

var metricDescs = []metricDesc{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", containerLabels, counter},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", containerLabels, counter},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", containerLabels, counter},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", containerLabels, counter},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", containerLabels, counter},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", containerLabels, counter},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", containerLabels, gauge},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", containerLabels, gauge},
	{"container_memory_working_set_bytes", "Current working set in bytes.", containerLabels, gauge},
	{"container_memory_cache", "Number of bytes of page cache memory.", containerLabels, gauge},
	{"container_memory_rss", "Size of RSS in bytes.", containerLabels, gauge},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", containerLabels, gauge},
	{"container_memory_swap", "Container swap usage in bytes.", containerLabels, gauge},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", containerLabels, gauge},
	{"container_memory_failcnt", "Number of memory usage hits limits.", containerLabels, counter},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", plus("failure_type", "scope"), counter},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", containerLabels, counter},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", plus("device"), gauge},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", plus("device"), gauge},
	{"container_fs_inodes_total", "Number of Inodes.", plus("device"), gauge},
	{"container_fs_inodes_free", "Number of available Inodes.", plus("device"), gauge},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", plus("device"), counter},
	{"container_fs_reads_total", "Cumulative count of reads completed.", plus("device"), counter},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", plus("device"), counter},
	{"container_fs_writes_total", "Cumulative count of writes completed.", plus("device"), counter},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", plus("device", "operation"), counter},
	{"container_processes", "Number of processes running inside the container.", containerLabels, gauge},
	{"container_threads", "Number of threads running inside the container.", containerLabels, gauge},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero.", containerLabels, gauge},
	{"container_file_descriptors", "Number of open file descriptors for the container.", containerLabels, gauge},
	{"container_sockets", "Number of open sockets for the container.", containerLabels, gauge},
	{"container_spec_cpu_period", "CPU period of the container.", containerLabels, gauge},
	{"container_spec_cpu_quota", "CPU quota of the container.", containerLabels, gauge},
	{"container_spec_cpu_shares", "CPU share of the container.", containerLabels, gauge},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", containerLabels, gauge},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", containerLabels, gauge},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", containerLabels, gauge},
	{"container_last_seen", "Last time a container was seen by the exporter.", containerLabels, gauge},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", plus("interface"), counter},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", plus("interface"), counter},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", plus("interface"), counter},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", plus("interface"), counter},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", plus("interface"), counter},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", plus("interface"), counter},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", plus("interface"), counter},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", plus("interface"), counter},
}

var metricKinds = func() map[string]runtimeapi.MetricType {
	m := map[string]runtimeapi.MetricType{}
	for _, d := range metricDescs {
		m[d.name] = d.kind
	}
	return m
}()

func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(metricDescs))
	for _, d := range metricDescs {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// metricSet builds the metrics of one object with its common labels.
type metricSet struct {
	ts     int64
	labels []string
	out    []*runtimeapi.Metric
}

func (ms *metricSet) add(name string, v uint64, extra ...string) {
	ms.out = append(ms.out, &runtimeapi.Metric{
		Name: name, Timestamp: ms.ts, MetricType: metricKinds[name],
		LabelValues: append(append([]string{}, ms.labels...), extra...), Value: u64(v),
	})
}

func seconds(ns uint64) uint64 { return ns / uint64(time.Second) }

// addCgroup adds what a cgroup's usage tells.
func (ms *metricSet) addCgroup(u *usage.Usage) {
	ms.add("container_cpu_usage_seconds_total", seconds(u.CPUTotal))
	ms.add("container_cpu_user_seconds_total", seconds(u.CPUUser))
	ms.add("container_cpu_system_seconds_total", seconds(u.CPUSystem))
	ms.add("container_cpu_cfs_periods_total", u.CFSPeriods)
	ms.add("container_cpu_cfs_throttled_periods_total", u.CFSThrottledPeriods)
	ms.add("container_cpu_cfs_throttled_seconds_total", seconds(u.CFSThrottledNanos))
	ms.add("container_memory_usage_bytes", u.MemoryUsage)
	ms.add("container_memory_max_usage_bytes", u.MemoryMaxUsage)
	ms.add("container_memory_working_set_bytes", u.MemoryWorkingSet)
	ms.add("container_memory_cache", u.MemoryCache)
	ms.add("container_memory_rss", u.MemoryRSS)
	ms.add("container_memory_mapped_file", u.MemoryMappedFile)
	ms.add("container_memory_swap", u.MemorySwap)
	ms.add("container_memory_kernel_usage", u.MemoryKernel)
	ms.add("container_memory_failcnt", u.MemoryFailcnt)
	for _, scope := range []string{"container", "hierarchy"} {
		ms.add("container_memory_failures_total", u.PageFaults, "pgfault", scope)
		ms.add("container_memory_failures_total", u.MajorPageFaults, "pgmajfault", scope)
	}
	ms.add("container_oom_events_total", u.OOMEvents)
	for _, io := range u.IO {
		ms.add("container_fs_reads_bytes_total", io.ReadBytes, io.Device)
		ms.add("container_fs_reads_total", io.Reads, io.Device)
		ms.add("container_fs_writes_bytes_total", io.WriteBytes, io.Device)
		ms.add("container_fs_writes_total", io.Writes, io.Device)
		ms.add("container_blkio_device_usage_total", io.ReadBytes, io.Device, "Read")
		ms.add("container_blkio_device_usage_total", io.WriteBytes, io.Device, "Write")
	}
	ms.add("container_processes", u.Processes)
	ms.add("container_threads", u.Threads)
	ms.add("container_threads_max", u.ThreadsMax)
	ms.add("container_file_descriptors", u.FileDescriptors)
	ms.add("container_sockets", u.Sockets)
}

func containerMetrics(st *container.Stats, pod *sandbox.Sandbox) *runtimeapi.ContainerMetrics {
	r := st.Record
	md := pod.Config.Metadata
	ms := &metricSet{ts: time.Now().UnixNano(), labels: []string{r.Name, r.Cgroup, r.Image, r.ID, md.Namespace, md.Name}}
	if u := st.Usage; u != nil {
		ms.ts = u.Time.UnixNano()
		ms.addCgroup(u)
	}
	dev := st.Layer.Mountpoint
	ms.add("container_fs_usage_bytes", st.Layer.Bytes, dev)
	if fs, err := usage.Filesystem(dev); err == nil {
		ms.add("container_fs_limit_bytes", fs.CapacityBytes, dev)
		ms.add("container_fs_inodes_total", fs.InodesTotal, dev)
		ms.add("container_fs_inodes_free", fs.InodesFree, dev)
	}
	var period, quota, shares, mem, swap uint64
	if res := r.Resources; res != nil {
		period, shares = uint64(max(res.CPUPeriod, 0)), uint64(max(res.CPUShares, 0))
		quota, mem, swap = uint64(max(res.CPUQuota, 0)), uint64(max(res.MemoryLimit, 0)), uint64(max(res.MemorySwapLimit, 0))
	}
	ms.add("container_spec_cpu_period", period)
	ms.add("container_spec_cpu_quota", quota)
	ms.add("container_spec_cpu_shares", shares)
	ms.add("container_spec_memory_limit_bytes", mem)
	ms.add("container_spec_memory_swap_limit_bytes", swap)
	if !r.Status.StartedAt.IsZero() {
		ms.add("container_start_time_seconds", uint64(r.Status.StartedAt.Unix()))
	}
	ms.add("container_last_seen", uint64(time.Now().Unix()))
	return &runtimeapi.ContainerMetrics{ContainerId: r.ID, Metrics: ms.out}
}

// podMetrics are the pod's own metrics and its containers'.
func (s *Server) podMetrics(st *sandbox.Stats, ctrs []*container.Stats) *runtimeapi.PodSandboxMetrics {
	sb := st.Sandbox
	md := sb.Config.Metadata
	ms := &metricSet{ts: st.Time.UnixNano(), labels: []string{"", sb.Cgroup, "", sb.ID, md.Namespace, md.Name}}
	if u := st.Usage; u != nil {
		ms.addCgroup(u)
	}
	ms.add("container_start_time_seconds", uint64(sb.CreatedAt.Unix()))
	ms.add("container_last_seen", uint64(time.Now().Unix()))
	if n := st.Network; n != nil {
		nms := &metricSet{ts: n.Time.UnixNano(), labels: []string{"POD", sb.Cgroup, "", sb.ID, md.Namespace, md.Name}}
		for _, i := range n.Interfaces {
			nms.add("container_network_receive_bytes_total", i.RxBytes, i.Name)
			nms.add("container_network_receive_errors_total", i.RxErrors, i.Name)
			nms.add("container_network_receive_packets_total", i.RxPackets, i.Name)
			nms.add("container_network_receive_packets_dropped_total", i.RxDropped, i.Name)
			nms.add("container_network_transmit_bytes_total", i.TxBytes, i.Name)
			nms.add("container_network_transmit_errors_total", i.TxErrors, i.Name)
			nms.add("container_network_transmit_packets_total", i.TxPackets, i.Name)
			nms.add("container_network_transmit_packets_dropped_total", i.TxDropped, i.Name)
		}
		ms.out = append(ms.out, nms.out...)
	}
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID, Metrics: ms.out}
	for _, cs := range ctrs {
		pm.ContainerMetrics = append(pm.ContainerMetrics, containerMetrics(cs, sb))
	}
	return pm
}

func (s *Server) listPodMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	// Each cgroup read once, in detail, and no stats' CPU sample taken.
	sts := m.ListUsage(sandbox.Filter{})
	var ctrs map[string][]*container.Stats
	if cm := s.opts.Containers; cm != nil && len(sts) > 0 {
		pods := make(map[string]bool, len(sts))
		for _, st := range sts {
			pods[st.Sandbox.ID] = true
		}
		ctrs = cm.ListUsageByPod(pods)
	}
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(sts))
	for _, st := range sts {
		out = append(out, s.podMetrics(st, ctrs[st.Sandbox.ID]))
	}
	return out, nil
}

func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	out, err := s.listPodMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

func (s *Server) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	items, err := s.listPodMetrics(stream.Context())
	if err != nil {
		return err
	}
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
