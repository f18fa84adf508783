// Package sandbox runs pod sandboxes: the pod's network, IPC and UTS
// namespaces pinned by bind mounts (no long-lived process holds them), the
// pause process of pods that share a PID namespace, the pod's shim, its
// cgroup, hostname, /etc/hosts, resolv.conf and /dev/shm, and its network
// through package cni. Records live in the bbolt database.
//
// State layout, under berthd's state dir:
//
//	ns/                    a private bind mount of itself: pins never propagate
//	ns/<pod-id>/user|net|ipc|uts|pid   bind mounts of the pod's namespaces (nsfs)
//	pods/<pod-id>/
//	    pod.json           id and cgroup, written first: repairs a crash mid-run
//	    hostname hosts resolv.conf   for containers to bind
//	    shm/               tmpfs mount (64 MiB), the pod's /dev/shm
//	    shim.sock shim.log the shim's control socket and stderr
package sandbox

import (
	"time"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/runtime/userns"
)

// Metadata names a pod; two live pods never share it.
type Metadata struct {
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Attempt   uint32 `json:"attempt"`
}

func (m Metadata) key() string {
	return m.Namespace + "\x00" + m.Name + "\x00" + m.UID + "\x00" + itoa(uint64(m.Attempt))
}

// DNSConfig is the pod's resolv.conf; empty means the node's.
type DNSConfig struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// Resources are cgroup limits: the pod's own plus its overhead.
type Resources struct {
	CPUShares   uint64 `json:"cpuShares,omitempty"`
	CPUQuota    int64  `json:"cpuQuota,omitempty"`
	CPUPeriod   uint64 `json:"cpuPeriod,omitempty"`
	MemoryLimit int64  `json:"memoryLimit,omitempty"`
	CpusetCpus  string `json:"cpusetCpus,omitempty"`
	CpusetMems  string `json:"cpusetMems,omitempty"`
}

// Config is what RunPodSandbox asks for.
type Config struct {
	Metadata       Metadata          `json:"metadata"`
	Hostname       string            `json:"hostname,omitempty"`
	LogDirectory   string            `json:"logDirectory,omitempty"`
	DNS            *DNSConfig        `json:"dns,omitempty"`
	PortMappings   []cni.PortMapping `json:"portMappings,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	RuntimeHandler string            `json:"runtimeHandler,omitempty"`
	CgroupParent   string            `json:"cgroupParent,omitempty"`
	Sysctls        map[string]string `json:"sysctls,omitempty"`
	// Privileged is whether the pod may run privileged containers; nil in
	// records made before berth kept it.
	Privileged  *bool `json:"privileged,omitempty"`
	HostNetwork bool  `json:"hostNetwork,omitempty"`
	HostIPC     bool  `json:"hostIPC,omitempty"`
	HostPID     bool  `json:"hostPID,omitempty"`
	// SharedPID gives the pod one PID namespace with a pause process as PID 1.
	SharedPID bool `json:"sharedPID,omitempty"`
	// UserNS gives the pod a user namespace of its own with these maps;
	// nil: the node's.
	UserNS    *userns.Mapping `json:"userNS,omitempty"`
	Resources *Resources      `json:"resources,omitempty"`
	Overhead  *Resources      `json:"overhead,omitempty"`
}

// State of a pod as recorded.
type State string

const (
	StateReady    State = "ready"
	StateNotReady State = "notready"
)

// Sandbox is a pod's record.
type Sandbox struct {
	ID        string    `json:"id"`
	Config    Config    `json:"config"`
	CreatedAt time.Time `json:"createdAt"`
	State     State     `json:"state"`

	// StateDir holds the pod's files and shim socket.
	StateDir string `json:"stateDir"`
	// Namespace paths: pins under <state>/ns/<id>, "" for the node's.
	UserNS string `json:"userns,omitempty"`
	NetNS  string `json:"netns,omitempty"`
	IPCNS  string `json:"ipcns,omitempty"`
	UTSNS  string `json:"utsns,omitempty"`
	PIDNS  string `json:"pidns,omitempty"`
	// ShmPath is the pod's /dev/shm (a tmpfs, or the node's with hostIPC).
	ShmPath string `json:"shmPath"`
	// Network and IPs are the CNI attachment; IPs[0] is the primary.
	Network string   `json:"network,omitempty"`
	IPs     []string `json:"ips,omitempty"`
	// NetworkAttached: CNI ADD done and DEL not yet.
	NetworkAttached bool `json:"networkAttached,omitempty"`
	// CgroupParent is where the pod's cgroup lives; Cgroup is the pod's own
	// (cgroupfs path), holding the shim, under which containers go.
	Cgroup string `json:"cgroup"`

	ShimPid        int    `json:"shimPid"`
	ShimStartTime  uint64 `json:"shimStartTime"`
	PausePid       int    `json:"pausePid,omitempty"`
	PauseStartTime uint64 `json:"pauseStartTime,omitempty"`
}

// Status is a pod's record and whether it is live right now.
type Status struct {
	*Sandbox
	// Ready: recorded ready, the shim answers and the pins are in place.
	Ready bool
	// Reason says why a recorded-ready pod is not ready.
	Reason string
}

// HostsPath, ResolvConfPath and HostnamePath are the files containers bind.
func (s *Sandbox) HostsPath() string      { return s.StateDir + "/hosts" }
func (s *Sandbox) ResolvConfPath() string { return s.StateDir + "/resolv.conf" }
func (s *Sandbox) HostnamePath() string   { return s.StateDir + "/hostname" }

// Filter selects pods in List; zero fields match everything.
type Filter struct {
	ID            string // exact or unique prefix
	State         *State
	LabelSelector map[string]string
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}
