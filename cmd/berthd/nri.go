package main

import (
	"context"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/cri/nri"
	"github.com/berth-dev/berth/runtime/cdi"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/sandbox"
)

// NRIConfig is the [nri] table, with containerd's key names and defaults.
type NRIConfig struct {
	Enable                    bool   `toml:"enable" json:"enable" doc:"serve NRI plugins (github.com/containerd/nri): they connect to socket_path or are started from plugin_path"`
	SocketPath                string `toml:"socket_path" json:"socketPath" doc:"unix socket NRI plugins connect to"`
	PluginPath                string `toml:"plugin_path" json:"pluginPath" doc:"directory of NRI plugins berthd starts itself (executables named NN-name)"`
	PluginConfigPath          string `toml:"plugin_config_path" json:"pluginConfigPath" doc:"directory of the configuration of the plugins berthd starts (NN-name.conf or name.conf)"`
	PluginRegistrationTimeout string `toml:"plugin_registration_timeout" json:"pluginRegistrationTimeout" doc:"how long a connecting NRI plugin may take to register (Go duration)"`
	PluginRequestTimeout      string `toml:"plugin_request_timeout" json:"pluginRequestTimeout" doc:"how long an NRI plugin may take to answer one request (Go duration); one that does not answer in time is dropped"`
}

func defaultNRIConfig() NRIConfig {
	return NRIConfig{
		SocketPath:                "/var/run/nri/nri.sock",
		PluginPath:                "/opt/nri/plugins",
		PluginConfigPath:          "/etc/nri/conf.d",
		PluginRegistrationTimeout: "5s",
		PluginRequestTimeout:      "2s",
	}
}

func (c NRIConfig) validate() error {
	for name, p := range map[string]string{"nri.socket_path": c.SocketPath, "nri.plugin_path": c.PluginPath, "nri.plugin_config_path": c.PluginConfigPath} {
		if !filepath.IsAbs(p) {
			return configErrorf("%s %q: need an absolute path", name, p)
		}
	}
	for name, v := range map[string]string{"nri.plugin_registration_timeout": c.PluginRegistrationTimeout, "nri.plugin_request_timeout": c.PluginRequestTimeout} {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return configErrorf("%s %q: need a positive duration such as 2s", name, v)
		}
	}
	return nil
}

// newNRI makes berthd an NRI runtime when the config enables it (nil
// otherwise; its Start opens the socket): plugins see the pods and
// containers and are told of their lifecycle. fits refuses resources the
// node cannot honour.
func newNRI(cfg Config, pods *sandbox.Manager, containers *container.Manager, bus *events.Bus, devices *cdi.Registry, fits func(string, *runtimeapi.LinuxContainerResources) error) (*nri.NRI, error) {
	c := cfg.NRI
	if !c.Enable {
		return nil, nil
	}
	reg, _ := time.ParseDuration(c.PluginRegistrationTimeout)
	req, _ := time.ParseDuration(c.PluginRequestTimeout)
	n, err := nri.New(nri.Config{
		SocketPath: c.SocketPath, PluginPath: c.PluginPath, PluginConfigPath: c.PluginConfigPath,
		RegistrationTimeout: reg, RequestTimeout: req,
	}, nri.Deps{
		Version: version, Pods: pods, Containers: containers, Events: bus, CheckResources: fits,
		CDI: devices,
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// nriPodResize tells NRI plugins of in-place pod resizes
// (UpdatePodSandboxResources).
type nriPodResize struct{ n *nri.NRI }

func (h nriPodResize) UpdatePodSandbox(ctx context.Context, podID string, resources, overhead *runtimeapi.LinuxContainerResources) error {
	return h.n.UpdatingPod(ctx, podID, overhead, resources)
}

func (h nriPodResize) PostUpdatePodSandbox(ctx context.Context, podID string) error {
	h.n.PodUpdated(ctx, podID)
	return nil
}
