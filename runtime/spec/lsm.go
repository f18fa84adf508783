package spec

import (
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// berth applies no AppArmor profile and no SELinux label. As the kubelet and
// critest expect of such a runtime, asking for no confinement (nothing,
// unconfined, or the runtime's default, which here is none) is accepted, and
// asking for a specific AppArmor profile is refused rather than silently
// ignored. SELinux options are Kubernetes' exception: they "apply only on
// nodes with SELinux enabled", the kubelet sends them wherever a pod names
// them (emptyDir and FSGroup pods of the node e2e suite set level s0), and
// containerd and CRI-O ignore them when the node has no SELinux. So does
// berth; on a node with SELinux enabled, where a label would be expected to
// hold, it refuses them.

// selinuxEnabled tells whether the node runs SELinux: selinuxfs is mounted
// at its usual place (what libselinux and go-selinux look for first).
var selinuxEnabled = func() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/selinux", &st) == nil && st.Type == unix.SELINUX_MAGIC
}

// CheckLSM refuses the AppArmor profiles and SELinux labels of a container
// request that berth cannot apply.
func CheckLSM(sc *runtimeapi.LinuxContainerSecurityContext) error {
	if sc.GetPrivileged() {
		// Privileged containers run unconfined whatever they name.
		return nil
	}
	//lint:ignore SA1019 older kubelets still send the deprecated field
	if err := checkAppArmor(sc.GetApparmor(), sc.GetApparmorProfile()); err != nil {
		return err
	}
	return checkSELinux(sc.GetSelinuxOptions())
}

// CheckSandboxLSM is CheckLSM for a pod's security context.
func CheckSandboxLSM(sc *runtimeapi.LinuxSandboxSecurityContext) error {
	if sc.GetPrivileged() {
		return nil
	}
	if err := checkAppArmor(sc.GetApparmor(), ""); err != nil {
		return err
	}
	return checkSELinux(sc.GetSelinuxOptions())
}

func checkAppArmor(p *runtimeapi.SecurityProfile, deprecated string) error {
	if p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault, runtimeapi.SecurityProfile_Unconfined:
			return nil
		case runtimeapi.SecurityProfile_Localhost:
			return invalid("AppArmor profile %q: AppArmor is not supported by berth on this node", p.GetLocalhostRef())
		default:
			return invalid("unknown AppArmor profile type %v", p.GetProfileType())
		}
	}
	switch deprecated {
	case "", profileUnconfined, profileRuntimeDefault:
		return nil
	}
	return invalid("AppArmor profile %q: AppArmor is not supported by berth on this node", deprecated)
}

func checkSELinux(o *runtimeapi.SELinuxOption) error {
	if o.GetUser() == "" && o.GetRole() == "" && o.GetType() == "" && o.GetLevel() == "" || !selinuxEnabled() {
		return nil
	}
	return invalid("SELinux options %q: SELinux is not supported by berth on this node",
		o.GetUser()+":"+o.GetRole()+":"+o.GetType()+":"+o.GetLevel())
}
