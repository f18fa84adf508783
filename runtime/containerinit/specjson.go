package containerinit

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// initSpec is the part of the OCI spec the init acts on. encoding/json
// builds its codecs for every type reachable from the one it decodes, on
// first use in each process; for the whole specs.Spec (resources, hooks,
// Windows, VM ...) that was a fifth of the init's CPU time, and every
// container pays it afresh. A field the init starts to use must be added
// here (and to parseSpec).
type initSpec struct {
	Process    *specs.Process `json:"process,omitempty"`
	Root       *specs.Root    `json:"root,omitempty"`
	Hostname   string         `json:"hostname,omitempty"`
	Domainname string         `json:"domainname,omitempty"`
	Mounts     []specs.Mount  `json:"mounts,omitempty"`
	Linux      *initLinux     `json:"linux,omitempty"`
	// Only the hooks run inside the container (hooks.go).
	Hooks       *initHooks        `json:"hooks,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type initHooks struct {
	// Those the creator runs, which must come first (hooks.go).
	Prestart        []specs.Hook `json:"prestart,omitempty"`
	CreateRuntime   []specs.Hook `json:"createRuntime,omitempty"`
	CreateContainer []specs.Hook `json:"createContainer,omitempty"`
	StartContainer  []specs.Hook `json:"startContainer,omitempty"`
}

type initLinux struct {
	Namespaces        []specs.LinuxNamespace `json:"namespaces,omitempty"`
	Devices           []specs.LinuxDevice    `json:"devices,omitempty"`
	Sysctl            map[string]string      `json:"sysctl,omitempty"`
	CgroupsPath       string                 `json:"cgroupsPath,omitempty"`
	RootfsPropagation string                 `json:"rootfsPropagation,omitempty"`
	MaskedPaths       []string               `json:"maskedPaths,omitempty"`
	ReadonlyPaths     []string               `json:"readonlyPaths,omitempty"`
	Seccomp           *specs.LinuxSeccomp    `json:"seccomp,omitempty"`
}

// parseSpec decodes an OCI spec into what the init uses of it.
func parseSpec(data []byte) (*specs.Spec, error) {
	var s initSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	out := &specs.Spec{Process: s.Process, Root: s.Root, Hostname: s.Hostname, Domainname: s.Domainname, Mounts: s.Mounts, Annotations: s.Annotations}
	if h := s.Hooks; h != nil && len(h.CreateContainer)+len(h.StartContainer) > 0 {
		out.Hooks = &specs.Hooks{
			//lint:ignore SA1019 prestart hooks are still handed out (NRI's generator).
			Prestart: h.Prestart, CreateRuntime: h.CreateRuntime,
			CreateContainer: h.CreateContainer, StartContainer: h.StartContainer,
		}
	}
	if l := s.Linux; l != nil {
		out.Linux = &specs.Linux{
			Namespaces: l.Namespaces, Devices: l.Devices, Sysctl: l.Sysctl, CgroupsPath: l.CgroupsPath,
			RootfsPropagation: l.RootfsPropagation, MaskedPaths: l.MaskedPaths, ReadonlyPaths: l.ReadonlyPaths,
			Seccomp: l.Seccomp,
		}
	}
	return out, nil
}
