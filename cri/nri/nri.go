// Package nri makes berth an NRI runtime (github.com/containerd/nri): NRI
// plugins connect to its socket (or are started from plugin_path), learn
// the pods and containers there are, are told of each lifecycle event and
// may adjust a container before it is made, update containers' resources
// at any time, or evict them.
package nri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	api "github.com/containerd/nri/pkg/api"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/sandbox"
)

// Config is berthd's [nri] table.
type Config struct {
	SocketPath          string
	PluginPath          string
	PluginConfigPath    string
	RegistrationTimeout time.Duration
	RequestTimeout      time.Duration
}

// CDIInjector applies CDI devices, named fully ("vendor.com/class=dev"),
// to a container's spec. berth's CDI registry fills it; an unknown device
// is an error naming it.
type CDIInjector interface {
	InjectDevices(s *specs.Spec, devices ...string) error
}

// Deps are the parts of berth the plugins see and act on.
type Deps struct {
	Version    string
	Pods       *sandbox.Manager
	Containers *container.Manager
	// Events carries the containers' exits nobody asked for (their stop
	// is told to plugins from there).
	Events *events.Bus
	// CheckResources refuses resources this node cannot honour (cri's
	// fits); nil: none refused.
	CheckResources func(field string, r *runtimeapi.LinuxContainerResources) error
	// CDI resolves CDI devices that plugins add; nil: such an adjustment
	// fails the create.
	CDI CDIInjector
}

// NRI is berth's side of NRI. A nil *NRI (NRI disabled) does nothing.
type NRI struct {
	a       *adaptation.Adaptation
	deps    Deps
	metrics *pluginMetrics
	sub     *events.Subscription
	done    chan struct{}

	mu    sync.Mutex
	known map[string]*tracked // container id → what plugins were told
	// gone holds the ids plugins were told are removed, for a while: an
	// exit event still queued on the bus must not bring one back and tell
	// plugins of a second stop after its removal.
	gone      map[string]time.Time
	lastPrune time.Time
}

// goneFor is how long a removed container's id is remembered; the bus
// delivers its events within seconds.
const goneFor = 5 * time.Minute

// tracked is a container as plugins know it, and which of its ends they
// have been told (each once, stop before remove).
type tracked struct {
	mu      sync.Mutex
	pod     string
	c       *api.Container
	stopped bool
	removed bool
}

// New sets up NRI; Start opens the socket.
func New(cfg Config, d Deps) (*NRI, error) {
	if d.Pods == nil || d.Containers == nil {
		return nil, errors.New("nri: needs the pod and container managers")
	}
	n := &NRI{deps: d, metrics: newPluginMetrics(), known: map[string]*tracked{}, gone: map[string]time.Time{}, done: make(chan struct{})}
	if cfg.RegistrationTimeout > 0 {
		adaptation.SetPluginRegistrationTimeout(cfg.RegistrationTimeout)
	}
	if cfg.RequestTimeout > 0 {
		adaptation.SetPluginRequestTimeout(cfg.RequestTimeout)
	}
	opts := []adaptation.Option{
		adaptation.WithSocketPath(cfg.SocketPath),
		adaptation.WithPluginPath(cfg.PluginPath),
		adaptation.WithPluginConfigPath(cfg.PluginConfigPath),
		adaptation.WithMetrics(n.metrics),
	}
	a, err := adaptation.New("berth", d.Version, n.synchronize, n.updateContainers, opts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	n.a = a
	return n, nil
}

// Start installs the hooks into the pod and container managers, opens
// the socket and starts the plugins of plugin_path.
func (n *NRI) Start(socketPath string) error {
	if n == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o711); err != nil {
		return fmt.Errorf("nri: socket dir: %w", err)
	}
	n.deps.Pods.SetExtensions(sandbox.Extensions{Run: n.runPod, Stop: n.stopPod, Remove: n.removePod})
	n.deps.Containers.SetAdjust(n.createContainer)
	if n.deps.Events != nil {
		n.sub = n.deps.Events.Subscribe(0)
		go n.watch()
	}
	if err := n.a.Start(); err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	klog.InfoS("NRI enabled", "socket", socketPath)
	return nil
}

// Stop closes the socket and stops the plugins berthd started.
func (n *NRI) Stop() {
	if n == nil {
		return
	}
	n.a.Stop()
	close(n.done)
	if n.sub != nil {
		n.sub.Close()
	}
}

// BlockSync holds back plugins that are connecting from being
// synchronized while a pod or container is being made: a plugin learns of
// each either in its synchronization or by its event, never neither.
func (n *NRI) BlockSync() (unblock func()) {
	if n == nil {
		return func() {}
	}
	b := n.a.BlockPluginSync()
	return b.Unblock
}

// failed names what failed: the plugin, when the error is the plugin's
// (a failure the plugin's call recorded since the request began).
// The plugin's own error (a ttrpc status) is flattened to its text, so
// that the CRI code is berth's: a plugin that refused is
// FailedPrecondition, one that did not answer in time DeadlineExceeded,
// one whose connection broke Unavailable.
func (n *NRI) failed(op string, err error, since time.Time) error {
	if err == nil {
		return nil
	}
	what := "NRI " + op
	if p := n.metrics.failedSince(op, since); p != "" {
		what += " (plugin " + p + ")"
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	kind := errdefs.ErrFailedPrecondition
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %s", what, context.DeadlineExceeded, msg)
	case errors.Is(err, ttrpc.ErrClosed):
		kind = errdefs.ErrUnavailable
	}
	return fmt.Errorf("%s: %w: %s", what, kind, msg)
}

func (n *NRI) pod(id string) *api.PodSandbox {
	sb, err := n.deps.Pods.Get(id)
	if err != nil {
		return &api.PodSandbox{Id: id}
	}
	return podOf(sb)
}

func (n *NRI) runPod(ctx context.Context, sb *sandbox.Sandbox) error {
	since := time.Now()
	err := n.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: podOf(sb)})
	return n.failed("RunPodSandbox", err, since)
}

func (n *NRI) stopPod(ctx context.Context, sb *sandbox.Sandbox) error {
	// The containers' stops go out first, as they happened first.
	for _, rec := range n.deps.Containers.List(ctx, container.Filter{PodID: sb.ID}) {
		n.stopped(ctx, rec)
	}
	since := time.Now()
	err := n.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: podOf(sb)})
	return n.failed("StopPodSandbox", err, since)
}

func (n *NRI) removePod(ctx context.Context, sb *sandbox.Sandbox) error {
	// The pod's containers are gone: plugins hear of each first.
	n.mu.Lock()
	var ids []string
	for id, t := range n.known {
		if t.pod == sb.ID {
			ids = append(ids, id)
		}
	}
	n.mu.Unlock()
	for _, id := range ids {
		n.removed(ctx, &container.Record{ID: id, PodID: sb.ID})
	}
	since := time.Now()
	err := n.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: podOf(sb)})
	return n.failed("RemovePodSandbox", err, since)
}

// track returns the container's entry, made from rec when new.
func (n *NRI) track(rec *container.Record, c *api.Container) *tracked {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.known[rec.ID]
	if !ok {
		if _, gone := n.gone[rec.ID]; gone {
			// Told already of both ends; kept out of known.
			return &tracked{pod: rec.PodID, c: containerOf(rec, nil), stopped: true, removed: true}
		}
		if c == nil {
			c = containerOf(rec, nil)
		}
		t = &tracked{pod: rec.PodID, c: c}
		n.known[rec.ID] = t
	} else if c != nil {
		t.c = c
	}
	return t
}

func (n *NRI) forget(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.known, id)
	now := time.Now()
	if now.Sub(n.lastPrune) > time.Minute {
		n.lastPrune = now
		for g, at := range n.gone {
			if now.Sub(at) > goneFor {
				delete(n.gone, g)
			}
		}
	}
	n.gone[id] = now
}
