package container

import (
	"maps"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// withPodConfig is the request's sandbox config with what the pod itself
// decides: its sysctls, which the container's init writes (in the pod's
// namespaces) and of which the request's copy was never checked (a
// node-wide kernel.core_pattern, say, that RunPodSandbox would have
// refused), and whether the pod is privileged, which gates a privileged
// container.
func withPodConfig(podCfg *runtimeapi.PodSandboxConfig, pod *Pod) *runtimeapi.PodSandboxConfig {
	c := &runtimeapi.PodSandboxConfig{}
	if podCfg != nil {
		c = proto.Clone(podCfg).(*runtimeapi.PodSandboxConfig)
	}
	if c.Linux == nil {
		c.Linux = &runtimeapi.LinuxPodSandboxConfig{}
	}
	c.Linux.Sysctls = maps.Clone(pod.Sysctls)
	if pod.Privileged != nil {
		if c.Linux.SecurityContext == nil {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{}
		}
		c.Linux.SecurityContext.Privileged = *pod.Privileged
	}
	return c
}
