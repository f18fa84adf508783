package nri

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	api "github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/cri/validate"
	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/container"
)

// adjust applies the plugins' adjustment to a container's spec, as a
// kubelet request for the same would be: what berth cannot honour is
// refused (InvalidArgument naming the plugins that answered), never
// silently dropped.
func (n *NRI) adjust(rec *container.Record, s *specs.Spec, a *api.ContainerAdjustment, since time.Time) error {
	if a == nil {
		return nil
	}
	if err := n.adjust1(s, a); err != nil {
		what := "NRI adjustment of container " + rec.Name
		if ps := n.metrics.answered("CreateContainer", since); len(ps) > 0 {
			what += " (plugins " + strings.Join(ps, ", ") + ")"
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (n *NRI) adjust1(s *specs.Spec, a *api.ContainerAdjustment) error {
	if err := unsupported(a); err != nil {
		return invalidArg(err)
	}
	if err := checkAdjustment(a); err != nil {
		return invalidArg(err)
	}
	g := generate.SpecGenerator(specEditor{s: s},
		generate.WithCDIDeviceInjector(n.injectCDI),
		generate.WithResourceChecker(func(*specs.LinuxResources) error { return nil }),
	)
	if err := g.Adjust(a); err != nil {
		return invalidArg(err)
	}
	if err := validate.Resources("linux.resources", criOf(s)); err != nil {
		return err
	}
	if n.deps.CheckResources != nil {
		if err := n.deps.CheckResources("linux.resources", criOf(s)); err != nil {
			return err
		}
	}
	return nil
}

// invalidArg marks err InvalidArgument unless it has a kind already.
func invalidArg(err error) error {
	for _, k := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrFailedPrecondition} {
		if errors.Is(err, k) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
}

func (n *NRI) injectCDI(s *specs.Spec, devices []string) error {
	if n.deps.CDI == nil {
		return fmt.Errorf("%w: CDI devices %s: this berth has no CDI registry", errdefs.ErrInvalidArgument, strings.Join(devices, ", "))
	}
	return n.deps.CDI.InjectDevices(s, devices...)
}

// unsupported refuses the adjustments berth's runtime has no way to carry
// out: it sets no I/O priority, scheduler policy,
// RDT class, block I/O class, memory policy or network device; nor those
// it would not take from a request (cgroups path, sysctls).
func unsupported(a *api.ContainerAdjustment) error {
	var what []string
	l := a.GetLinux()
	// The adaptation hands some of these out empty: only one that says
	// something is refused.
	for _, m := range []struct {
		name string
		msg  proto.Message
	}{
		{"I/O priority", l.GetIoPriority()}, {"scheduler", l.GetScheduler()},
		{"RDT", l.GetRdt()}, {"RDT class", l.GetResources().GetRdtClass()},
		{"block I/O class", l.GetResources().GetBlockioClass()}, {"memory policy", l.GetMemoryPolicy()},
	} {
		if m.msg != nil && proto.Size(m.msg) > 0 {
			what = append(what, m.name)
		}
	}
	// berthd makes and removes the container's cgroup below its pod's.
	if l.GetCgroupsPath() != "" {
		what = append(what, "cgroups path")
	}
	// A pod's sysctls are checked to be namespaced when it is made; a
	// container's own would escape that check.
	if len(l.GetSysctl()) > 0 {
		what = append(what, "sysctls")
	}
	if len(l.GetNetDevices()) > 0 {
		what = append(what, "network devices")
	}
	if len(what) == 0 {
		return nil
	}
	return fmt.Errorf("berth cannot apply %s", strings.Join(what, ", "))
}

// checkAdjustment holds the strings plugins add to what a request's are
// held to: they reach the container's environment, argv and mount table.
func checkAdjustment(a *api.ContainerAdjustment) error {
	for _, kv := range a.GetEnv() {
		if key, marked := api.IsMarkedForRemoval(kv.GetKey()); marked {
			if key == "" {
				return fmt.Errorf("env: removal of an empty name")
			}
			continue
		}
		if err := validate.Env(kv.GetKey(), kv.GetValue()); err != nil {
			return err
		}
	}
	if len(a.GetArgs()) > 0 {
		args := a.GetArgs()
		if args[0] == "" && len(args) == 1 {
			return fmt.Errorf("args: an empty command")
		}
		if err := validate.Argv("args", args); err != nil {
			return err
		}
	}
	if h := a.GetHooks(); h != nil {
		for _, hook := range slices.Concat(h.Prestart, h.CreateRuntime, h.CreateContainer, h.StartContainer, h.Poststart, h.Poststop) {
			if !filepath.IsAbs(hook.GetPath()) {
				return fmt.Errorf("hook %q: need an absolute path", hook.GetPath())
			}
			if err := validate.Argv("hook args", hook.GetArgs()); err != nil {
				return err
			}
		}
	}
	for _, m := range a.GetMounts() {
		dest := m.GetDestination()
		if key, marked := api.IsMarkedForRemoval(dest); marked {
			dest = key
		}
		if !filepath.IsAbs(dest) || strings.ContainsRune(dest, 0) {
			return fmt.Errorf("mount destination %q: need an absolute path", m.GetDestination())
		}
		if m.GetType() == "bind" || containsOpt(m.GetOptions(), "bind", "rbind") {
			if !filepath.IsAbs(m.GetSource()) {
				return fmt.Errorf("mount %s: bind source %q: need an absolute path", dest, m.GetSource())
			}
		}
	}
	for _, d := range a.GetLinux().GetDevices() {
		path := d.GetPath()
		if key, marked := api.IsMarkedForRemoval(path); marked {
			path = key
		}
		if !strings.HasPrefix(filepath.Clean(path), "/dev/") {
			return fmt.Errorf("device %q: need a path below /dev", d.GetPath())
		}
		switch d.GetType() {
		case "c", "b", "u", "p", "":
		default:
			return fmt.Errorf("device %s: type %q: need c, b, u or p", path, d.GetType())
		}
	}
	if o := a.GetLinux().GetOomScoreAdj(); o != nil && (o.GetValue() < -1000 || o.GetValue() > 1000) {
		return fmt.Errorf("oom score adjustment %d: need -1000..1000", o.GetValue())
	}
	for _, r := range a.GetRlimits() {
		if !strings.HasPrefix(r.GetType(), "RLIMIT_") {
			return fmt.Errorf("rlimit %q: not a resource limit", r.GetType())
		}
		if r.GetSoft() > r.GetHard() {
			return fmt.Errorf("rlimit %s: soft %d above hard %d", r.GetType(), r.GetSoft(), r.GetHard())
		}
	}
	return nil
}

func containsOpt(opts []string, want ...string) bool {
	for _, o := range opts {
		for _, w := range want {
			if o == w {
				return true
			}
		}
	}
	return false
}
