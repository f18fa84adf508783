package sandbox

import (
	"fmt"
	"strings"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/sysctl"
)

// ipcSysctls are the namespaced kernel.* sysctls (IPC namespace).
var ipcSysctls = map[string]bool{
	"kernel/shmmax": true, "kernel/shmall": true, "kernel/shmmni": true, "kernel/shm_rmid_forced": true,
	"kernel/msgmax": true, "kernel/msgmnb": true, "kernel/msgmni": true, "kernel/sem": true,
}

// validateSysctls accepts only sysctls that live in a namespace the pod has
// of its own: net.* with a pod network namespace, the IPC ones with a pod
// IPC namespace. Anything else would change the node.
func validateSysctls(c *Config) error {
	for name, val := range c.Sysctls {
		p, err := sysctl.Path(name)
		if err != nil || strings.ContainsAny(val, "\n") {
			return fmt.Errorf("sysctl %q: %w: malformed", name, errdefs.ErrInvalidArgument)
		}
		switch {
		case strings.HasPrefix(p, "net/"):
			if c.HostNetwork {
				return fmt.Errorf("sysctl %q: %w: a pod on the host network cannot set it (it would change the node)", name, errdefs.ErrInvalidArgument)
			}
		case ipcSysctls[p] || strings.HasPrefix(p, "fs/mqueue/"):
			if c.HostIPC {
				return fmt.Errorf("sysctl %q: %w: a pod with host IPC cannot set it (it would change the node)", name, errdefs.ErrInvalidArgument)
			}
		default:
			return fmt.Errorf("sysctl %q: %w: not namespaced (it would change the node)", name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
