package spec

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

// defaultMounts are every container's kernel filesystems (containerd's set).
func defaultMounts(privileged bool) []specs.Mount {
	sysOpt, cgOpt := "ro", "ro"
	if privileged {
		sysOpt, cgOpt = "rw", "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysOpt}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", cgOpt}},
	}
}

// mountInfo finds the host mount that holds p; a variable for tests.
var mountInfo = func(p string) (*mountinfo.Info, error) {
	ms, err := mountinfo.GetMounts(mountinfo.ParentsFilter(p))
	if err != nil {
		return nil, err
	}
	var best *mountinfo.Info
	for _, m := range ms {
		if best == nil || len(m.Mountpoint) > len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount holds %s", p)
	}
	return best, nil
}

func propagationOf(m *mountinfo.Info) (shared, slave bool) {
	for _, f := range strings.Fields(m.Optional) {
		switch {
		case strings.HasPrefix(f, "shared:"):
			shared = true
		case strings.HasPrefix(f, "master:"):
			slave = true
		}
	}
	return
}

func mounts(c *runtimeapi.ContainerConfig, sc *runtimeapi.LinuxContainerSecurityContext, in Input) ([]specs.Mount, string, error) {
	var user []specs.Mount
	taken := map[string]bool{}
	rootProp := ""
	for _, m := range c.GetMounts() {
		sm, prop, err := criMount(m)
		if err == nil {
			err = idmapMount(&sm, m, in.Namespaces.UserMapping)
		}
		if err != nil {
			return nil, "", err
		}
		switch {
		case prop == "rshared":
			rootProp = "rshared"
		case prop == "rslave" && rootProp == "":
			rootProp = "rslave"
		}
		if taken[sm.Destination] {
			return nil, "", invalid("two mounts at %s", sm.Destination)
		}
		taken[sm.Destination] = true
		user = append(user, sm)
	}

	var out []specs.Mount
	for _, m := range defaultMounts(sc.GetPrivileged()) {
		if !taken[m.Destination] {
			out = append(out, m)
		}
	}
	podMode := "rw"
	if sc.GetReadonlyRootfs() {
		podMode = "ro"
	}
	for _, f := range []struct{ src, dst string }{
		{in.Pod.Hostname, "/etc/hostname"}, {in.Pod.Hosts, "/etc/hosts"}, {in.Pod.ResolvConf, "/etc/resolv.conf"},
	} {
		if f.src != "" && !taken[f.dst] {
			out = append(out, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: []string{"rbind", "rprivate", podMode}})
		}
	}
	if !taken["/dev/shm"] {
		shm := specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}
		switch {
		case sc.GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE:
			shm = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "rprivate", "rw"}}
		case in.Pod.Shm != "":
			shm = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: in.Pod.Shm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"}}
		}
		out = append(out, shm)
	}
	sortMounts(user)
	return append(out, user...), rootProp, nil
}

func criMount(m *runtimeapi.Mount) (specs.Mount, string, error) {
	dst := m.GetContainerPath()
	if !path.IsAbs(dst) {
		return specs.Mount{}, "", invalid("mount destination %q is not absolute", dst)
	}
	dst = path.Clean(dst)
	if m.GetImage() != nil {
		return specs.Mount{}, "", fmt.Errorf("%w: image volume mounts", errdefs.ErrUnimplemented)
	}
	if m.GetHostPath() == "" {
		return specs.Mount{}, "", invalid("mount at %s has no host path", dst)
	}
	// A relative one would be resolved against berthd's working dir, a
	// place the client knows nothing of.
	if !filepath.IsAbs(m.GetHostPath()) {
		return specs.Mount{}, "", invalid("mount host path %q is not absolute", m.GetHostPath())
	}
	src, err := filepath.EvalSymlinks(m.GetHostPath())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return specs.Mount{}, "", invalid("mount host path %q does not exist", m.GetHostPath())
		}
		return specs.Mount{}, "", fmt.Errorf("resolve mount host path %q: %w", m.GetHostPath(), err)
	}
	if src, err = filepath.Abs(src); err != nil {
		return specs.Mount{}, "", err
	}
	prop := "rprivate"
	switch m.GetPropagation() {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		info, err := mountInfo(src)
		if err != nil {
			return specs.Mount{}, "", fmt.Errorf("propagation of %s: %w", src, err)
		}
		shared, slave := propagationOf(info)
		if m.GetPropagation() == runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL {
			if !shared {
				return specs.Mount{}, "", invalid("path %q is mounted on %q but it is not a shared mount", src, info.Mountpoint)
			}
			prop = "rshared"
		} else {
			if !shared && !slave {
				return specs.Mount{}, "", invalid("path %q is mounted on %q but it is not a shared or slave mount", src, info.Mountpoint)
			}
			prop = "rslave"
		}
	default:
		return specs.Mount{}, "", invalid("unknown mount propagation %v", m.GetPropagation())
	}
	opts := []string{"rbind", prop, "rw"}
	if m.GetReadonly() {
		opts[2] = "ro"
	}
	if m.GetRecursiveReadOnly() {
		if !m.GetReadonly() {
			return specs.Mount{}, "", invalid("recursive read-only mount at %s must be read-only", dst)
		}
		if prop != "rprivate" {
			return specs.Mount{}, "", invalid("recursive read-only mount at %s must have private propagation", dst)
		}
		opts = append(opts, "rro")
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}, prop, nil
}
