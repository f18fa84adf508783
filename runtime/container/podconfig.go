package container

import (
	"maps"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// withPodSysctls is the request's sandbox config with the pod's own
// sysctls: the container's init writes them (in the pod's namespaces), and
// the request's copy was never checked (a node-wide kernel.core_pattern,
// say, that RunPodSandbox would have refused).
func withPodSysctls(podCfg *runtimeapi.PodSandboxConfig, pod *Pod) *runtimeapi.PodSandboxConfig {
	c := &runtimeapi.PodSandboxConfig{}
	if podCfg != nil {
		c = proto.Clone(podCfg).(*runtimeapi.PodSandboxConfig)
	}
	if c.Linux == nil {
		c.Linux = &runtimeapi.LinuxPodSandboxConfig{}
	}
	c.Linux.Sysctls = maps.Clone(pod.Sysctls)
	return c
}
