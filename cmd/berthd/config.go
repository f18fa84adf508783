package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/berth-dev/berth/imageservice/reference"
	"github.com/berth-dev/berth/runtime/cdi"
)

const defaultConfigPath = "/etc/berth/config.toml"

// Config is berthd's effective configuration: file values overridden by flags.
type Config struct {
	Listen string `toml:"listen" json:"listen" doc:"CRI socket the kubelet and crictl talk to: a path or unix:// URL (mode 0660)"`
	Root   string `toml:"root" json:"root" doc:"persistent state: the database, image layers, containers' writable layers, the CNI result cache"`
	// State is stateDir in Status(verbose), as containerd names it: critest
	// looks there for the file system of the containers' files (to probe
	// id-mapped mounts).
	State         string   `toml:"state" json:"stateDir" doc:"volatile state (namespace pins, pod and container files, the instance lock); gone after a reboot"`
	CgroupDriver  string   `toml:"cgroup_driver" json:"cgroupDriver" doc:"cgroupfs or systemd; must match the kubelet's cgroupDriver"`
	CNIConfDir    string   `toml:"cni_conf_dir" json:"cniConfDir" doc:"CNI network configs: the first in lexical order is used"`
	CNIBinDirs    []string `toml:"cni_bin_dirs" json:"cniBinDirs" doc:"directories searched for CNI plugins, in order"`
	StreamAddress string   `toml:"stream_address" json:"streamAddress" doc:"host:port of the exec/attach/port-forward server (port 0: a free port)"`
	// StreamIdleTimeout closes an exec/attach/port-forward session with no
	// traffic for this long (Go duration).
	StreamIdleTimeout string `toml:"stream_idle_timeout" json:"streamIdleTimeout" doc:"an exec/attach/port-forward session with no traffic for this long is closed (Go duration)"`
	RegistryConfigDir string `toml:"registry_config_dir" json:"registryConfigDir" doc:"registry configs: <host>/hosts.toml per registry, containerd's format"`
	// PinnedImages are image references reported Pinned (never garbage collected by the kubelet).
	PinnedImages []string `toml:"pinned_images" json:"pinnedImages,omitempty" doc:"image references reported pinned, which the kubelet never garbage-collects"`
	// ImagePullProgressTimeout cancels a pull receiving too little for this long (Go duration).
	ImagePullProgressTimeout string `toml:"image_pull_progress_timeout" json:"imagePullProgressTimeout" doc:"a pull receiving less than 64 KiB for this long is cancelled (Go duration)"`
	// SeccompDefault confines a container whose request names no seccomp
	// profile with runtime/default. Off by default: the CRI (and critest)
	// read an unset profile as unconfined; the kubelet's --seccomp-default
	// sets RuntimeDefault explicitly.
	SeccompDefault bool `toml:"seccomp_default" json:"seccompDefault" doc:"true: a container whose request names no seccomp profile gets runtime/default"`
	// RuntimeHandlers are more names of the one runtime that a
	// RuntimeClass's handler may give (e.g. "test-handler", which the
	// Kubernetes node e2e suite expects preconfigured).
	RuntimeHandlers []string `toml:"runtime_handlers" json:"runtimeHandlers,omitempty" doc:"more names a RuntimeClass handler may give for berth's one runtime (pods asking for them run as the default does)"`
	// MetricsAddress serves Prometheus metrics at http://<address>/metrics
	// ("127.0.0.1:9090"); empty (the default) serves none.
	MetricsAddress string `toml:"metrics_address" json:"metricsAddress,omitempty" doc:"host:port of a Prometheus endpoint at /metrics, e.g. 127.0.0.1:9090; empty: none"`
	// CDISpecDirs are read (and watched) for CDI device specs; a later dir
	// wins over an earlier one for a device both define.
	CDISpecDirs []string `toml:"cdi_spec_dirs" json:"cdiSpecDirs" doc:"directories of CDI device spec files (watched; a later dir wins for a device both define; [] turns CDI off)"`

	// NRI is the [nri] table (cmd/berthd/nri.go).
	NRI NRIConfig `toml:"nri" json:"nri" doc:"NRI plugins (github.com/containerd/nri), off by default as in containerd"`

	// ShimIdleMonitor: an idle pod's shim becomes berth-mon after this
	// long (docs/design.md, "The C monitor"); "0" keeps the Go shim.
	ShimIdleMonitor string `toml:"shim_idle_monitor" json:"shimIdleMonitor" doc:"an idle pod's shim hands over to the small C monitor berth-mon after this long (Go duration; 0: never)"`
	// ShimIdleMonitorMax bounds the wait a pod woken soon after each
	// hand-off backs off to (an exec probe every 10 s would otherwise pay
	// a Go start at each probe); equal to shim_idle_monitor: no back-off.
	ShimIdleMonitorMax string `toml:"shim_idle_monitor_max" json:"shimIdleMonitorMax" doc:"a shim woken within this long of its hand-off doubles its idle wait, up to this (Go duration; shim_idle_monitor or less: no back-off)"`

	// StatsCollectPeriod: while the stats lists are called, the pods' and
	// containers' usage is read in the background this often and the
	// lists answer from it (docs/design.md, State); "0": in each call.
	StatsCollectPeriod string `toml:"stats_collect_period" json:"statsCollectPeriod" doc:"while stats are asked for, pods' and containers' usage is read in the background this often and the stats lists answer from it (Go duration, at least 1s; 0: read in each call)"`

	// warnings are what validate fixed (the mode of a dir others could
	// write), for berthd to log.
	warnings []string
	// hooks are the test hooks of the hidden --test-hooks (testhooks.go).
	hooks testHooks
}

func defaultConfig() Config {
	return Config{
		Listen:                   "unix:///run/berth/berth.sock",
		Root:                     "/var/lib/berth",
		State:                    "/run/berth",
		CgroupDriver:             "cgroupfs",
		CNIConfDir:               "/etc/cni/net.d",
		CNIBinDirs:               []string{"/usr/lib/cni", "/opt/cni/bin"},
		StreamAddress:            "127.0.0.1:0",
		StreamIdleTimeout:        "4h",
		ShimIdleMonitor:          "2s",
		ShimIdleMonitorMax:       "1m",
		StatsCollectPeriod:       "10s",
		RegistryConfigDir:        "/etc/berth/certs.d",
		ImagePullProgressTimeout: "1m",
		CDISpecDirs:              append([]string(nil), cdi.DefaultSpecDirs...),
		NRI:                      defaultNRIConfig(),
	}
}

// statsCollectPeriod is stats_collect_period, checked by validate.
func (c Config) statsCollectPeriod() time.Duration {
	d, _ := time.ParseDuration(c.StatsCollectPeriod)
	return d
}

// configError marks a problem with the configuration: berthd exits with status 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// listFlag collects a comma-separated or repeated flag into a list.
type listFlag struct {
	vals []string
	set  bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(s string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.vals = append(l.vals, v)
		}
	}
	return nil
}

type flagValues struct {
	configPath, listen, root, state, cniConfDir, registryConfigDir, streamAddress, cgroupDriver string
	cniBinDirs                                                                                  listFlag
	verbosity                                                                                   int
	version                                                                                     bool
	testHooks                                                                                   string
}

func newFlagSet(fv *flagValues) *flag.FlagSet {
	fs := flag.NewFlagSet("berthd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: berthd [flags]\n       berthd config default | berthd config check [--config FILE]\n\nFlags:\n")
		printUsageDefaults(fs)
	}
	d := defaultConfig()
	fs.StringVar(&fv.configPath, "config", defaultConfigPath, "path of the TOML config file (absent: defaults)")
	fs.StringVar(&fv.listen, "listen", d.Listen, "CRI socket: a path or unix:// URL")
	fs.StringVar(&fv.root, "root", d.Root, "persistent state directory")
	fs.StringVar(&fv.state, "state", d.State, "volatile state directory")
	fs.StringVar(&fv.cniConfDir, "cni-conf-dir", d.CNIConfDir, "directory of CNI network configs")
	fs.Var(&fv.cniBinDirs, "cni-bin-dir", "CNI plugin directories, comma-separated or repeated (default "+strings.Join(d.CNIBinDirs, ",")+")")
	fs.StringVar(&fv.registryConfigDir, "registry-config-dir", d.RegistryConfigDir, "directory of <host>/hosts.toml registry configs")
	fs.StringVar(&fv.streamAddress, "stream-address", d.StreamAddress, "host:port of the exec/attach/port-forward server")
	fs.StringVar(&fv.cgroupDriver, "cgroup-driver", d.CgroupDriver, "cgroup driver: cgroupfs or systemd")
	fs.IntVar(&fv.verbosity, "v", 0, "log verbosity")
	fs.BoolVar(&fv.version, "version", false, "print the version and exit")
	fs.StringVar(&fv.testHooks, testHooksFlag, "", "tests only (hidden): testhooks.go")
	return fs
}

// loadConfig reads the config file (a missing default file means defaults)
// and applies the flags that were set on the command line.
func loadConfig(fs *flag.FlagSet, fv *flagValues) (Config, error) {
	cfg := defaultConfig()
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	if err := decodeConfigFile(fv.configPath, explicit["config"], &cfg); err != nil {
		return cfg, err
	}
	overrides := map[string]func(){
		"listen":              func() { cfg.Listen = fv.listen },
		"root":                func() { cfg.Root = fv.root },
		"state":               func() { cfg.State = fv.state },
		"cni-conf-dir":        func() { cfg.CNIConfDir = fv.cniConfDir },
		"cni-bin-dir":         func() { cfg.CNIBinDirs = fv.cniBinDirs.vals },
		"registry-config-dir": func() { cfg.RegistryConfigDir = fv.registryConfigDir },
		"stream-address":      func() { cfg.StreamAddress = fv.streamAddress },
		"cgroup-driver":       func() { cfg.CgroupDriver = fv.cgroupDriver },
	}
	for name, apply := range overrides {
		if explicit[name] {
			apply()
		}
	}
	var err error
	if cfg.hooks, err = parseTestHooks(fv.testHooks); err != nil {
		return cfg, err
	}
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	return cfg, cfg.prepareDirs()
}

func decodeConfigFile(path string, mustExist bool, cfg *Config) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return nil
	}
	if err != nil {
		return configErrorf("config file %s: %v", path, err)
	}
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		return configErrorf("config file %s: %v", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, 0, len(undecoded))
		for _, k := range undecoded {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		return configErrorf("config file %s: unknown key(s): %s", path, strings.Join(keys, ", "))
	}
	return nil
}

// SocketPath is the filesystem path of the CRI socket.
func (c Config) SocketPath() string { return strings.TrimPrefix(c.Listen, "unix://") }

func (c *Config) validate() error {
	if strings.Contains(c.Listen, "://") && !strings.HasPrefix(c.Listen, "unix://") {
		return configErrorf("listen %q: only unix sockets are supported", c.Listen)
	}
	if c.SocketPath() == "" || !filepath.IsAbs(c.SocketPath()) {
		return configErrorf("listen %q: need an absolute socket path", c.Listen)
	}
	c.Listen = "unix://" + c.SocketPath()
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		return configErrorf("cgroup_driver %q: must be cgroupfs or systemd", c.CgroupDriver)
	}
	if _, _, err := net.SplitHostPort(c.StreamAddress); err != nil {
		return configErrorf("stream_address %q: %v", c.StreamAddress, err)
	}
	if c.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
			return configErrorf("metrics_address %q: %v", c.MetricsAddress, err)
		}
	}
	for name, p := range map[string]string{"root": c.Root, "state": c.State, "cni_conf_dir": c.CNIConfDir, "registry_config_dir": c.RegistryConfigDir} {
		if !filepath.IsAbs(p) {
			return configErrorf("%s %q: need an absolute path", name, p)
		}
	}
	for _, h := range c.RuntimeHandlers {
		if !isDNSLabel(h) || h == "berth" {
			return configErrorf("runtime_handlers: %q is not a DNS label (lower-case letters, digits and '-', at most 63) other than \"berth\"", h)
		}
	}
	for _, ref := range c.PinnedImages {
		if _, err := reference.Parse(ref); err != nil {
			if _, isID := reference.IDPrefix(ref); !isID {
				return configErrorf("pinned_images: %v", err)
			}
		}
	}
	if d, err := time.ParseDuration(c.StreamIdleTimeout); err != nil || d <= 0 {
		return configErrorf("stream_idle_timeout %q: need a positive duration such as 4h", c.StreamIdleTimeout)
	}
	if d, err := time.ParseDuration(c.ShimIdleMonitor); err != nil || d < 0 {
		return configErrorf("shim_idle_monitor %q: need a duration such as 2s, or 0", c.ShimIdleMonitor)
	}
	if d, err := time.ParseDuration(c.ShimIdleMonitorMax); err != nil || d < 0 {
		return configErrorf("shim_idle_monitor_max %q: need a duration such as 1m, or 0", c.ShimIdleMonitorMax)
	}
	// Under a second the rounds would be most of berthd's work.
	if d, err := time.ParseDuration(c.StatsCollectPeriod); err != nil || d < 0 || (d > 0 && d < time.Second) {
		return configErrorf("stats_collect_period %q: need a duration of at least 1s such as 10s, or 0", c.StatsCollectPeriod)
	}
	if d, err := time.ParseDuration(c.ImagePullProgressTimeout); err != nil || d <= 0 {
		return configErrorf("image_pull_progress_timeout %q: need a positive duration such as 1m", c.ImagePullProgressTimeout)
	}
	if err := c.NRI.validate(); err != nil {
		return err
	}
	if len(c.CNIBinDirs) == 0 {
		return configErrorf("cni_bin_dirs: need at least one directory")
	}
	for _, p := range c.CNIBinDirs {
		if !filepath.IsAbs(p) {
			return configErrorf("cni_bin_dirs %q: need an absolute path", p)
		}
	}
	for _, p := range c.CDISpecDirs {
		if !filepath.IsAbs(p) {
			return configErrorf("cdi_spec_dirs %q: need an absolute path", p)
		}
	}
	return nil
}

// prepareDirs makes the directories berthd writes to, which must be
// berthd's alone (secureDirs). Apart from validate: `berthd config check`
// validates a file without touching the node.
func (c *Config) prepareDirs() error {
	dirs := [][2]string{{"root", c.Root}, {"state", c.State}, {"listen", filepath.Dir(c.SocketPath())}}
	for _, d := range dirs {
		name, p := d[0], d[1]
		if err := os.MkdirAll(p, 0o711); err != nil {
			return configErrorf("%s %q: %v", name, p, err)
		}
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			return configErrorf("%s %q: not a directory", name, p)
		}
	}
	warnings, err := secureDirs(dirs)
	c.warnings = warnings
	return err
}

// JSON renders the effective configuration for Status(verbose).
func (c Config) JSON() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// isDNSLabel tells an RFC 1123 label, what a RuntimeClass's handler is.
func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
