// Package cri serves the Kubernetes CRI v1 API: it validates requests,
// translates them into calls on the domain packages and maps their errors to
// gRPC codes. It touches neither the filesystem nor processes itself.
package cri

import (
	"sync"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/nri"
	"github.com/berth-dev/berth/imageservice"
	"github.com/berth-dev/berth/runtime/cdi"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/runtime/spec"
	"github.com/berth-dev/berth/sandbox"
)

// Options are what the CRI layer needs to know about the daemon.
type Options struct {
	// Version is berth's build version.
	Version string
	// CgroupDriver is "cgroupfs" or "systemd".
	CgroupDriver string
	// NetworkReady reports nil when pod networking can be set up.
	NetworkReady func() error
	// ConfigJSON is the effective daemon configuration, shown by Status(verbose).
	ConfigJSON string
	// CgroupVersion is the node's cgroup version, "v1" or "v2", shown by
	// Status(verbose) as cgroupVersion.
	CgroupVersion string
	// UserNamespaces is why pods cannot have user namespaces here (no
	// id-mapped mounts where the containers' files live); nil: they can.
	UserNamespaces error
	// RuntimeHandlers are more names of the default runtime handler that
	// a pod may ask for (cri/handlers.go).
	RuntimeHandlers []string
	// Images serves the ImageService (nil: its calls are Unimplemented).
	Images *imageservice.Service
	// Sandboxes runs pod sandboxes (cri/sandbox.go).
	Sandboxes *sandbox.Manager
	// Containers runs containers (cri/container.go).
	Containers *container.Manager
	// Events is the bus the sandbox and container managers publish their
	// lifecycle events to (cri/events.go; nil: GetContainerEvents is
	// Unimplemented).
	Events *events.Bus
	// Streams hands out exec/attach/port-forward URLs and StreamTargets
	// checks what they reach (cri/stream.go); nil: Unimplemented.
	Streams       StreamServer
	StreamTargets StreamTargets
	// NRI tells NRI plugins of the lifecycle events and applies their
	// adjustments (cri/nri); nil: NRI is disabled.
	NRI *nri.NRI
	// Node reads what this node's CPUs, memory nodes and hugepages allow
	// (nil: spec.ReadNode, read at each request, as CPUs come and go).
	Node func() spec.Node
	// PodResize is told of in-place pod resizes (NRI); nil: nobody.
	PodResize PodResizeHook
	// CDI is the node's CDI devices, listed by Status(verbose).
	CDI *cdi.Registry
}

// Server implements the CRI RuntimeService and ImageService.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	opts Options

	mu      sync.Mutex
	podCIDR string

	replies replyCache // the List replies' items (replycache.go)
}

// NewServer returns a CRI server over the given options.
func NewServer(opts Options) *Server {
	if opts.Node == nil {
		opts.Node = spec.ReadNode
	}
	return &Server{opts: opts}
}

// Register adds both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// fits refuses resources this node cannot honour (field names them in the
// request), before anything is asked of the domain packages.
func (s *Server) fits(field string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	// The node's CPUs, memory nodes and hugepage sizes matter only to a
	// request that names them; most do not, and their create need not
	// read sysfs. The memory floor needs no node facts.
	var node spec.Node
	if r.GetCpusetCpus() != "" || r.GetCpusetMems() != "" || len(r.GetHugepageLimits()) > 0 {
		node = s.opts.Node()
	}
	return node.CheckResources(field, r)
}
