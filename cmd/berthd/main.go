// Command berthd serves the Kubernetes CRI on a unix socket.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/imageservice"
	"github.com/berth-dev/berth/runtime/cdi"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/runtime/stream"
	"github.com/berth-dev/berth/runtime/userns"
	"github.com/berth-dev/berth/sandbox"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

const shutdownGrace = 10 * time.Second

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "config" {
		return runConfigCommand(args[1:], os.Stdout, os.Stderr)
	}
	var fv flagValues
	fs := newFlagSet(&fv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "berthd: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	if fv.version {
		fmt.Printf("berthd %s\n", version)
		return 0
	}
	initLogging(fv.verbosity)
	defer klog.Flush()
	takeNotifySocket()

	cfg, err := loadConfig(fs, &fv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berthd: %v\n", err)
		return 2
	}
	for _, w := range cfg.warnings {
		klog.InfoS("Warning: fixed the mode of a directory others could write", "detail", w)
	}
	shim, err := findShim()
	if err != nil {
		fmt.Fprintf(os.Stderr, "berthd: %v\n", err)
		return 1
	}
	if err := serve(cfg, shim); err != nil {
		klog.ErrorS(err, "berthd stopped")
		return 1
	}
	return 0
}

func initLogging(v int) {
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	_ = kfs.Set("v", strconv.Itoa(v))
}

func serve(cfg Config, shim string) error {
	unlock, err := lockStateDir(cfg.State)
	if err != nil {
		return err
	}
	defer unlock()

	db, err := openDB(cfg.Root)
	if err != nil {
		return err
	}
	defer db.Close()
	// Domain services (images, pods, containers) are built here from db and
	// cfg and handed to the CRI server through cri.Options.

	lis, err := listenUnix(cfg.SocketPath())
	if err != nil {
		return err
	}
	defer os.Remove(cfg.SocketPath())

	// srv is set below; the pods read the pod CIDR from it at run time.
	var srv *cri.Server
	// bus carries the pods' and containers' lifecycle events to
	// GetContainerEvents.
	bus := events.New()
	usernsErr := probeUserNamespaces(shim, cfg.Root, cfg.State)
	pods, err := newSandboxManager(cfg, db, shim, func() string { return srv.PodCIDR() }, bus, usernsErr)
	if err != nil {
		return err
	}
	defer pods.Close()

	images, err := newImageService(cfg, db)
	if err != nil {
		return err
	}
	cdiDevices, err := cdi.New(cfg.CDISpecDirs)
	if err != nil {
		return err
	}
	defer cdiDevices.Close()
	containers, err := newContainerManager(cfg, db, pods, images, bus, cdiDevices)
	if err != nil {
		return err
	}
	stopMetrics, err := startMetricsServer(cfg, pods, containers)
	if err != nil {
		return err
	}
	defer stopMetrics()

	streamRuntime := &stream.Runtime{Containers: streamContainers{containers}, Pods: streamPods{pods}}
	streams, err := startStreamServer(cfg, streamRuntime)
	if err != nil {
		return err
	}
	defer streams.Stop()
	// Status(verbose) shows the address bound (port 0 was a free port).
	cfg.StreamAddress = streams.addr

	nriRuntime, err := newNRI(cfg, pods, containers, bus, cdiDevices, func(field string, r *runtimeapi.LinuxContainerResources) error {
		return srv.Fits(field, r)
	})
	if err != nil {
		return err
	}
	defer nriRuntime.Stop()

	srv = cri.NewServer(cri.Options{
		NRI:           nriRuntime,
		Images:        images,
		Sandboxes:     pods,
		Containers:    containers,
		Events:        bus,
		Streams:       streams,
		StreamTargets: streamRuntime,
		Version:       version,
		CgroupDriver:  cfg.CgroupDriver,
		NetworkReady: func() error {
			_, err := cni.LoadNetwork(cfg.CNIConfDir)
			return err
		},
		ConfigJSON:      cfg.JSON(),
		CgroupVersion:   nodeCgroupVersion(),
		UserNamespaces:  usernsErr,
		CDI:             cdiDevices,
		PodResize:       nriPodResize{nriRuntime},
		RuntimeHandlers: cfg.RuntimeHandlers,
	})
	// Plugins connect from here on: the server their updates are checked
	// by exists.
	if err := nriRuntime.Start(cfg.NRI.SocketPath); err != nil {
		return err
	}
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(cri.UnaryInterceptor),
		grpc.ChainStreamInterceptor(cri.StreamInterceptor),
		grpc.ForceServerCodecV2(srv.Codec()),
	)
	srv.Register(g)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-sigs
		klog.InfoS("Shutting down", "signal", sig.String())
		notifyStopping()
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(shutdownGrace):
			g.Stop()
		}
	}()

	klog.InfoS("berthd serving", "version", version, "listen", cfg.Listen, "root", cfg.Root, "state", cfg.State)
	serving := make(chan struct{})
	defer close(serving)
	go notifyReadyWhenServing(cfg.Listen, serving)
	if err := g.Serve(lis); err != nil {
		return fmt.Errorf("serve %s: %w", cfg.Listen, err)
	}
	return nil
}

// probeUserNamespaces tells why pods cannot have user namespaces here, if
// they cannot: the image layers and the containers' files live under root,
// and the pod's root sees them through id-mapped mounts.
func probeUserNamespaces(shim, root, state string) error {
	err := userns.Supported(shim, root)
	if err == nil {
		// The namespace's root mounts its container's rootfs by path.
		err = userns.Searchable(filepath.Join(state, "containers"))
	}
	if err != nil {
		klog.InfoS("Pods cannot have user namespaces", "reason", err)
	}
	return err
}

// findShim is the berth-shim beside berthd. Every pod needs it, so a
// berthd without it would answer every RunPodSandbox with an error: it
// refuses to start instead.
func findShim() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find berth-shim: locate berthd: %w", err)
	}
	path := filepath.Join(filepath.Dir(self), "berth-shim")
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("berth-shim must be beside berthd: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("berth-shim %s is not an executable file (mode %v)", path, st.Mode())
	}
	return path, nil
}

// newSandboxManager runs pods with the berth-shim next to berthd and the
// CNI network of the config dir (its cache under root).
func newSandboxManager(cfg Config, db *bolt.DB, shim string, podCIDR func() string, bus *events.Bus, usernsErr error) (*sandbox.Manager, error) {
	cgroupDriver, err := newCgroupDriver(cfg)
	if err != nil {
		return nil, err
	}
	network := cni.New(cfg.CNIConfDir, cfg.CNIBinDirs, filepath.Join(cfg.Root, "cni"))
	// Before any pod starts: the network's one masquerade per subnet
	// (cni.MasqueradeKey), for the pods still running too.
	if err := network.EnsureMasquerade(); err != nil {
		return nil, err
	}
	return sandbox.New(sandbox.Options{
		Cgroups:        cgroupDriver,
		DB:             db,
		StateDir:       cfg.State,
		ShimBinary:     shim,
		ShimEnv:        []string{"BERTH_SHIM_IDLE_MONITOR=" + cfg.ShimIdleMonitor, "BERTH_SHIM_IDLE_MONITOR_MAX=" + cfg.ShimIdleMonitorMax},
		Network:        network,
		PodCIDR:        podCIDR,
		Events:         bus,
		UserNamespaces: usernsErr,
		HoldNetRelease: cfg.hooks.holdNetRelease,

		StatsCollectPeriod: cfg.statsCollectPeriod(),
	})
}

// newImageService keeps images under root/images and pulls with the
// registry config dir's hosts.toml files.
func newImageService(cfg Config, db *bolt.DB) (*imageservice.Service, error) {
	progress, _ := time.ParseDuration(cfg.ImagePullProgressTimeout)
	return imageservice.New(imageservice.Options{
		Root:              cfg.Root,
		DB:                db,
		RegistryConfigDir: cfg.RegistryConfigDir,
		PinnedImages:      cfg.PinnedImages,
		ProgressTimeout:   progress,
		// Where the container manager keeps writable layers (runtime/container).
		ContainerLayersDir: filepath.Join(cfg.Root, "containers"),
	})
}

// nodeCgroupVersion is "v2" on a cgroup v2 only (unified) node and "v1" on a
// legacy or hybrid one, whose controllers are all on v1 hierarchies.
func nodeCgroupVersion() string {
	if cgroups.Mode() == cgroups.Unified {
		return "v2"
	}
	return "v1"
}

// openDB opens the metadata database shared by the domain services; each
// keeps its records in its own top-level bucket.
func openDB(root string) (*bolt.DB, error) {
	path := filepath.Join(root, "berth.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return db, nil
}

// lockStateDir makes sure only one berthd runs on a state dir.
func lockStateDir(state string) (func(), error) {
	path := filepath.Join(state, "berthd.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another berthd is running on state dir %s (lock %s held)", state, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// listenUnix replaces a stale socket a crash left (we hold the state lock, so
// no live berthd owns it) and restricts access to root and the socket group.
func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	return lis, nil
}
