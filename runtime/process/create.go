package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/containerinit"
	"github.com/berth-dev/berth/runtime/nsenter"
)

// CreateOpts describes one container process.
type CreateOpts struct {
	// InitPath is the berth-shim binary (its "init" role).
	InitPath string
	// BundleDir holds config.json, the spec the init reads.
	BundleDir string
	// Spec is the content of config.json; read from BundleDir when nil.
	Spec *specs.Spec
	// Stdio of the process; nil means /dev/null. Ignored for stdout and
	// stderr when the spec asks for a terminal (see Container.Console).
	Stdin, Stdout, Stderr *os.File
	// Timeout bounds the setup until "ready"; 0 means 30s.
	Timeout time.Duration
	// NodeHooks runs the prestart and createRuntime hooks when the init
	// asks for them (it does when it has createContainer hooks, which
	// must come after), with the init's pid.
	NodeHooks func(pid int) error
}

// namespaceKinds maps the spec's namespace types to nsenter's kinds.
var namespaceKinds = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace: nsenter.PID, specs.NetworkNamespace: nsenter.Net,
	specs.MountNamespace: nsenter.Mount, specs.IPCNamespace: nsenter.IPC,
	specs.UTSNamespace: nsenter.UTS, specs.CgroupNamespace: nsenter.Cgroup,
	specs.UserNamespace: nsenter.User,
}

func nsConfig(spec *specs.Spec) (nsenter.Config, error) {
	c := nsenter.Config{Join: map[string]string{}, SyncFD: 3}
	newMount := false
	for _, ns := range spec.Linux.Namespaces {
		kind, ok := namespaceKinds[ns.Type]
		if !ok {
			return c, fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		if ns.Type == specs.UserNamespace && ns.Path == "" {
			// Its maps would have to be written from outside while the
			// new process waits; pods make theirs (package userns).
			return c, errors.New("a container joins its pod's user namespace, it does not make one")
		}
		if ns.Type == specs.MountNamespace {
			if ns.Path != "" {
				return c, errors.New("a container needs a new mount namespace, not a path")
			}
			newMount = true
		}
		if ns.Path != "" {
			c.Join[kind] = ns.Path
		} else {
			c.New = append(c.New, kind)
		}
	}
	if !newMount {
		return c, errors.New("a container needs a new mount namespace")
	}
	return c, nil
}

// initSpecJSON is the spec as the init is sent it, one line: without what
// only the shim uses (the seccomp profile, compiled here and handed down as
// a program: decoding the runtime/default profile in every new init took
// half a millisecond; the resources, set by berthd), with an empty seccomp
// section that tells the init to load the program.
func initSpecJSON(spec *specs.Spec) ([]byte, error) {
	s := *spec
	if spec.Linux != nil {
		l := *spec.Linux
		if l.Seccomp != nil {
			l.Seccomp = &specs.LinuxSeccomp{}
		}
		l.Resources = nil
		s.Linux = &l
	}
	data, err := json.Marshal(&s)
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// openCgroup names the spec's cgroup, which must exist: berthd creates it
// with its resources (runtime/cgroups) before the create, and the init binds
// its dirs into the container's /sys/fs/cgroup.
func openCgroup(spec *specs.Spec) (*cgroupfs.Group, error) {
	if spec.Linux.CgroupsPath == "" {
		return nil, nil
	}
	g, err := cgroupfs.Open(spec.Linux.CgroupsPath)
	if err != nil {
		return nil, err
	}
	if !g.Exists() {
		return nil, fmt.Errorf("cgroup %s does not exist", spec.Linux.CgroupsPath)
	}
	return g, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Create starts the container's init and returns once it is ready to exec
// the command (or failed: then nothing is left behind).
func Create(o CreateOpts) (*Container, error) {
	spec := o.Spec
	if spec == nil {
		var err error
		if spec, err = readSpec(o.BundleDir); err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
	}
	if spec.Linux == nil || spec.Process == nil {
		return nil, errors.New("spec has no linux or process section")
	}
	nsc, err := nsConfig(spec)
	if err != nil {
		return nil, err
	}
	c := &Container{}
	if c.cg, err = openCgroup(spec); err != nil {
		return nil, err
	}
	// Sent on the sync socket: smaller than config.json, and the root of
	// a user namespace could not read that file (0600, the node's root's).
	data, err := initSpecJSON(spec)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	sources, index, err := containerinit.MountSources(spec)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	defer func() {
		for _, f := range sources {
			f.Close()
		}
	}()
	timeout := o.Timeout
	if h := spec.Hooks; h != nil && len(h.CreateContainer) > 0 {
		// The init runs them before it is ready.
		if timeout == 0 {
			timeout = defaultReadyTimeout
		}
		//lint:ignore SA1019 prestart hooks are still handed out (NRI's generator).
		timeout += containerinit.HooksTimeout(slices.Concat(h.Prestart, h.CreateRuntime, h.CreateContainer))
	}
	err = c.launch(launchOpts{
		initPath: o.InitPath, args: []string{o.BundleDir}, ns: nsc,
		stdin: o.Stdin, stdout: o.Stdout, stderr: o.Stderr, timeout: timeout,
		seccomp: spec.Linux.Seccomp, bundle: o.BundleDir, sources: sources, sourceIndex: index,
		first: data, nodeHooks: o.NodeHooks,
	})
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	return c, nil
}
