// Package cdi hands devices to containers through the Container Device
// Interface (tags.cncf.io/container-device-interface): vendors describe
// their devices in spec files under the spec dirs (berthd's cdi_spec_dirs),
// and a container that names a device (ContainerConfig.cdi_devices, or a
// cdi.k8s.io/* annotation of a device plugin) gets the device's edits
// (device nodes, mounts, environment, additional groups) in its OCI spec.
// The spec dirs are watched: a spec written, changed or removed counts for
// the next container without a restart.
package cdi

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
	cdilib "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/berth-dev/berth/errdefs"
)

// DefaultSpecDirs are where vendors put their spec files, as containerd and
// CRI-O read them: static specs first, generated ones (higher priority)
// second.
var DefaultSpecDirs = []string{"/etc/cdi", "/var/run/cdi"}

// Registry resolves device names against the spec dirs. The zero of
// *Registry (nil) knows no device.
type Registry struct {
	cache *cdilib.Cache
	dirs  []string
}

// New reads the spec dirs and watches them. A dir that does not exist
// (yet) is no error: it is picked up when it appears. Spec files that fail
// to parse are logged and left out; Devices and Errors tell about them.
//
// No dirs (cdi_spec_dirs = []) turns CDI off: the library would read its
// default dirs instead, which the node's admin has just said not to.
func New(dirs []string) (*Registry, error) {
	if len(dirs) == 0 {
		return &Registry{}, nil
	}
	cache, err := cdilib.NewCache(cdilib.WithSpecDirs(dirs...), cdilib.WithAutoRefresh(true))
	if cache == nil {
		return nil, fmt.Errorf("CDI spec dirs %v: %w", dirs, err)
	}
	if err != nil {
		klog.InfoS("Some CDI specs were left out", "dirs", dirs, "err", err)
	}
	return &Registry{cache: cache, dirs: append([]string(nil), dirs...)}, nil
}

// Close stops watching the spec dirs.
func (r *Registry) Close() {
	if r == nil || r.cache == nil {
		return
	}
	_ = r.cache.Configure(cdilib.WithAutoRefresh(false))
}

// Requested are the fully qualified device names a container asks for, its
// cdi_devices first and then those of its cdi.k8s.io/* annotations (sorted
// by key: maps have no order), each once. A malformed name is
// InvalidArgument.
func Requested(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, d := range cfg.GetCDIDevices() {
		n := d.GetName()
		if !parser.IsQualifiedName(n) {
			return nil, fmt.Errorf("%w: cdi_devices: %q is no CDI device name (vendor.com/class=name)", errdefs.ErrInvalidArgument, n)
		}
		add(n)
	}
	var keys []string
	for k := range cfg.GetAnnotations() {
		if strings.HasPrefix(k, cdilib.AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		_, devs, err := cdilib.ParseAnnotations(map[string]string{k: cfg.GetAnnotations()[k]})
		if err != nil {
			return nil, fmt.Errorf("%w: annotation %s: %v", errdefs.ErrInvalidArgument, k, err)
		}
		for _, d := range devs {
			add(d)
		}
	}
	return names, nil
}

// Check refuses, before anything is made, devices no spec defines
// (InvalidArgument naming them) and devices whose edits berth's runtime
// cannot carry out (FailedPrecondition): network devices and Intel RDT.
// prestart, createRuntime, poststart and poststop hooks berthd runs on the
// node (runtime/container/hooks.go); createContainer and startContainer
// hooks the container's init runs (runtime/containerinit/hooks.go).
func (r *Registry) Check(names []string) error {
	if len(names) == 0 {
		return nil
	}
	var unknown []string
	for _, n := range names {
		d := r.device(n)
		if d == nil {
			unknown = append(unknown, n)
			continue
		}
		if what := unsupported(&d.GetSpec().ContainerEdits, &d.ContainerEdits); what != "" {
			return fmt.Errorf("%w: CDI device %s (spec %s) asks for %s, which berth's runtime does not carry out", errdefs.ErrFailedPrecondition, n, d.GetSpec().GetPath(), what)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: unknown CDI device %s (no spec in %s defines it)", errdefs.ErrInvalidArgument, strings.Join(unknown, ", "), strings.Join(r.specDirs(), ", "))
	}
	return nil
}

func unsupported(edits ...*cdispec.ContainerEdits) string {
	for _, e := range edits {
		switch {
		case len(e.NetDevices) > 0:
			return "network devices"
		case e.IntelRdt != nil:
			return "Intel RDT"
		}
	}
	return ""
}

func (r *Registry) device(name string) *cdilib.Device {
	if r == nil || r.cache == nil {
		return nil
	}
	return r.cache.GetDevice(name)
}

func (r *Registry) specDirs() []string {
	if r == nil {
		return nil
	}
	return r.dirs
}

// InjectDevices applies the named devices' edits (and their spec files' common
// edits) to s, after checking them as Check does. This is the one entry
// point for every source of CDI devices: the CRI request and NRI plugins'
// adjustments alike (its name is the one NRI's CDI injector asks for). A
// nil *Registry knows no device: every name is InvalidArgument.
//
// In a container with its own user namespace a device node cannot be made
// (mknod is refused): runtime/containerinit then binds the node's file of
// the same path. A device whose spec names another host path gets a bind
// mount of that file instead, so that it reaches such a container too.
func (r *Registry) InjectDevices(s *specs.Spec, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	if err := r.Check(names); err != nil {
		return err
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	if unresolved, err := r.cache.InjectDevices(s, names...); err != nil {
		if len(unresolved) > 0 {
			return fmt.Errorf("%w: unknown CDI device %s", errdefs.ErrInvalidArgument, strings.Join(unresolved, ", "))
		}
		return fmt.Errorf("inject CDI devices %s: %w", strings.Join(names, ", "), err)
	}
	if hasUserNS(s) {
		for _, n := range names {
			d := r.device(n)
			if d == nil {
				continue
			}
			for _, e := range []*cdispec.ContainerEdits{&d.GetSpec().ContainerEdits, &d.ContainerEdits} {
				for _, dn := range e.DeviceNodes {
					bindFromHost(s, dn)
				}
			}
		}
	}
	return nil
}

func hasUserNS(s *specs.Spec) bool {
	return slices.ContainsFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace })
}

// bindFromHost turns a device node whose host file is elsewhere into a bind
// mount of that file (its cgroup rule stays).
func bindFromHost(s *specs.Spec, dn *cdispec.DeviceNode) {
	if dn.HostPath == "" || dn.HostPath == dn.Path {
		return
	}
	s.Linux.Devices = slices.DeleteFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == dn.Path })
	for _, m := range s.Mounts {
		if m.Destination == dn.Path {
			return
		}
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: dn.Path, Source: dn.HostPath, Type: "bind", Options: []string{"bind", "nosuid"}})
}

// Device is a device the spec dirs define, and the spec file it came from.
type Device struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
}

// Devices lists the devices known now, by name.
func (r *Registry) Devices() []Device {
	if r == nil || r.cache == nil {
		return nil
	}
	var out []Device
	for _, n := range r.cache.ListDevices() {
		if d := r.cache.GetDevice(n); d != nil {
			out = append(out, Device{Name: n, Spec: d.GetSpec().GetPath()})
		}
	}
	return out
}

// Errors are the spec files (or dirs) left out, with why.
func (r *Registry) Errors() map[string]string {
	if r == nil || r.cache == nil {
		return nil
	}
	out := map[string]string{}
	for path, errs := range r.cache.GetErrors() {
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		out[path] = strings.Join(msgs, "; ")
	}
	return out
}

// SpecDirs are the dirs read, lowest priority first.
func (r *Registry) SpecDirs() []string { return append([]string(nil), r.specDirs()...) }
