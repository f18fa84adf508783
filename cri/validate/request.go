package validate

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/spec"
)

// PodSandbox checks the strings of a RunPodSandbox config that reach a
// file, an argv or a cgroup path: metadata (CNI_ARGS, hostname), hostname
// (/etc/hostname, /etc/hosts), DNS (resolv.conf), the log directory, port
// mapping addresses, sysctls, the cgroup parent and resources.
func PodSandbox(c *runtimeapi.PodSandboxConfig) error {
	md := c.GetMetadata()
	if c == nil || md == nil {
		return fmt.Errorf("pod sandbox config and metadata are required: %w", errdefs.ErrInvalidArgument)
	}
	if err := Name("metadata.name", md.GetName(), MaxNameLen); err != nil {
		return err
	}
	if err := Name("metadata.namespace", md.GetNamespace(), MaxNamespaceLen); err != nil {
		return err
	}
	if err := Name("metadata.uid", md.GetUid(), MaxNameLen); err != nil {
		return err
	}
	if h := c.GetHostname(); h != "" {
		if err := Hostname("hostname", h); err != nil {
			return err
		}
	}
	if d := c.GetLogDirectory(); d != "" {
		if err := AbsPath("log_directory", d); err != nil {
			return err
		}
	}
	if dns := c.GetDnsConfig(); dns != nil {
		if err := DNS(dns.GetServers(), dns.GetSearches(), dns.GetOptions()); err != nil {
			return err
		}
	}
	for _, pm := range c.GetPortMappings() {
		if ip := pm.GetHostIp(); ip != "" {
			if err := IP("port_mappings.host_ip", ip); err != nil {
				return err
			}
		}
	}
	linux := c.GetLinux()
	if err := CgroupParent(linux.GetCgroupParent()); err != nil {
		return err
	}
	for name, value := range linux.GetSysctls() {
		if err := Sysctl(name, value); err != nil {
			return err
		}
	}
	if err := Resources("linux.resources", linux.GetResources()); err != nil {
		return err
	}
	return Resources("linux.overhead", linux.GetOverhead())
}

// Container checks the strings of a CreateContainer config that reach an
// argv, the environment, a path or a cgroup file.
func Container(c *runtimeapi.ContainerConfig) error {
	if c == nil {
		return fmt.Errorf("container config: %w: missing", errdefs.ErrInvalidArgument)
	}
	if err := Name("metadata.name", c.GetMetadata().GetName(), MaxNameLen); err != nil {
		return err
	}
	if err := Argv("command", c.GetCommand()); err != nil {
		return err
	}
	if err := Argv("args", c.GetArgs()); err != nil {
		return err
	}
	if wd := c.GetWorkingDir(); wd != "" {
		if err := AbsPath("working_dir", wd); err != nil {
			return err
		}
	}
	for _, kv := range c.GetEnvs() {
		if err := Env(kv.GetKey(), string(kv.GetValue())); err != nil {
			return err
		}
	}
	for _, m := range c.GetMounts() {
		if err := noNUL("mounts.container_path", m.GetContainerPath()); err != nil {
			return err
		}
		if err := noNUL("mounts.host_path", m.GetHostPath()); err != nil {
			return err
		}
	}
	for _, d := range c.GetDevices() {
		if err := noNUL("devices.container_path", d.GetContainerPath()); err != nil {
			return err
		}
		if err := noNUL("devices.host_path", d.GetHostPath()); err != nil {
			return err
		}
		if p := d.GetPermissions(); strings.Trim(p, "rwm") != "" {
			return invalid("devices.permissions", p, "only 'r', 'w' and 'm' are allowed")
		}
	}
	if err := noNUL("log_path", c.GetLogPath()); err != nil {
		return err
	}
	return Resources("linux.resources", c.GetLinux().GetResources())
}

// Argv checks a command line: an element cannot hold a NUL.
func Argv(field string, argv []string) error {
	for i, a := range argv {
		if err := noNUL(field+"["+strconv.Itoa(i)+"]", a); err != nil {
			return err
		}
	}
	return nil
}

// ExecCmd checks an exec's command: a program to run and its arguments.
func ExecCmd(cmd []string) error {
	if len(cmd) == 0 || cmd[0] == "" {
		return fmt.Errorf("cmd: %w: no program to run", errdefs.ErrInvalidArgument)
	}
	return Argv("cmd", cmd)
}

// Env checks one environment variable: a key that is not empty and holds
// no '=' (it would split into another key) and no NUL, a value without NUL.
func Env(key, value string) error {
	switch {
	case key == "":
		return invalid("envs.key", key, "empty")
	case strings.ContainsRune(key, '='):
		return invalid("envs.key", key, "contains '='")
	}
	if err := noNUL("envs.key", key); err != nil {
		return err
	}
	return noNUL("envs["+show(key)+"].value", value)
}

var hugepageSize = regexp.MustCompile(`^[1-9][0-9]*[KMGT]B$`)

// Resources checks the syntax of cgroup values: cpuset lists, hugepage
// sizes and unified (cgroup v2) file names and values. Whether this node
// has the CPUs and page sizes is spec.Node's to say.
func Resources(field string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	if _, err := spec.ParseList(r.GetCpusetCpus()); err != nil {
		return invalid(field+".cpuset_cpus", r.GetCpusetCpus(), err.Error())
	}
	if _, err := spec.ParseList(r.GetCpusetMems()); err != nil {
		return invalid(field+".cpuset_mems", r.GetCpusetMems(), err.Error())
	}
	for _, h := range r.GetHugepageLimits() {
		if !hugepageSize.MatchString(h.GetPageSize()) {
			return invalid(field+".hugepage_limits.page_size", h.GetPageSize(), "not a page size like 2MB or 1GB")
		}
	}
	for k, v := range r.GetUnified() {
		if err := cgroupFile(field+".unified", k); err != nil {
			return err
		}
		if err := oneLine(field+".unified["+show(k)+"]", v); err != nil {
			return err
		}
	}
	return nil
}

// cgroupFile checks a cgroup v2 interface file name ("memory.high"): one
// name inside the cgroup dir.
func cgroupFile(field, k string) error {
	ctrl, _, ok := strings.Cut(k, ".")
	if !ok || ctrl == "" || len(k) > 255 {
		return invalid(field, k, "not a cgroup file name like memory.high")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return invalid(field, k, "not a cgroup file name like memory.high")
		}
	}
	if strings.Contains(k, "..") {
		return invalid(field, k, "not a cgroup file name like memory.high")
	}
	return nil
}
