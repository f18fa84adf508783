package main

import (
	"strings"
	"testing"
)

func TestNRIConfig(t *testing.T) {
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NRI.Enable || cfg.NRI.SocketPath != "/var/run/nri/nri.sock" || cfg.NRI.PluginRequestTimeout != "2s" {
		t.Errorf("default [nri] = %+v, want off on /var/run/nri/nri.sock with containerd's timeouts", cfg.NRI)
	}
	cfg, err = parse(t, "[nri]\nenable = true\nsocket_path = \"/run/x/nri.sock\"\nplugin_request_timeout = \"5s\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.NRI.Enable || cfg.NRI.SocketPath != "/run/x/nri.sock" || cfg.NRI.PluginRequestTimeout != "5s" || cfg.NRI.PluginPath != "/opt/nri/plugins" {
		t.Errorf("[nri] = %+v", cfg.NRI)
	}
	if !strings.Contains(cfg.JSON(), `"nri":{"enable":true`) {
		t.Errorf("Status(verbose) config has no nri table: %s", cfg.JSON())
	}
	for file, want := range map[string]string{
		"[nri]\nsocket_path = \"rel.sock\"\n":             "nri.socket_path",
		"[nri]\nplugin_request_timeout = \"0s\"\n":        "nri.plugin_request_timeout",
		"[nri]\nplugin_registration_timeout = \"soon\"\n": "nri.plugin_registration_timeout",
		"[nri]\nenabled = true\n":                         "nri.enabled",
	} {
		if _, err := parse(t, file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("file %q: err = %v, want one naming %q", file, err, want)
		}
	}
}
