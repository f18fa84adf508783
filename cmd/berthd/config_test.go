package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func parse(t *testing.T, file string, args ...string) (Config, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	var fv flagValues
	fs := newFlagSet(&fv)
	base := []string{"--config", path, "--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--listen", filepath.Join(dir, "s.sock")}
	if err := fs.Parse(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	return loadConfig(fs, &fv)
}

func TestFileAndFlagPrecedence(t *testing.T) {
	cfg, err := parse(t, "cgroup_driver = \"systemd\"\ncni_bin_dirs = [\"/a\", \"/b\"]\nstream_address = \"127.0.0.1:1234\"\n",
		"--cni-bin-dir", "/x,/y", "--cni-bin-dir", "/z")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CgroupDriver != "systemd" {
		t.Errorf("driver from file = %q", cfg.CgroupDriver)
	}
	if want := []string{"/x", "/y", "/z"}; !reflect.DeepEqual(cfg.CNIBinDirs, want) {
		t.Errorf("bin dirs = %v, want flags %v over the file", cfg.CNIBinDirs, want)
	}
	if cfg.StreamAddress != "127.0.0.1:1234" {
		t.Errorf("stream address = %q", cfg.StreamAddress)
	}
	if !strings.HasPrefix(cfg.Listen, "unix:///") {
		t.Errorf("listen not normalised to a unix URL: %q", cfg.Listen)
	}
}

func TestConfigErrors(t *testing.T) {
	for file, want := range map[string]string{
		"bogus = 1\n":                              "bogus",
		"[cni]\nconf = 1\n":                        "cni",
		"cgroup_driver = \"x\"\n":                  "cgroup_driver",
		"cni_conf_dir = \"rel\"\n":                 "cni_conf_dir",
		"cni_bin_dirs = []\n":                      "cni_bin_dirs",
		"stream_address = \"::\"\n":                "stream_address",
		"root = 3\n":                               "root",
		"pinned_images = [\"Bad Ref\"]\n":          "pinned_images",
		"image_pull_progress_timeout = \"soon\"\n": "image_pull_progress_timeout",
		"runtime_handlers = [\"Test_Handler\"]\n":  "runtime_handlers",
		"runtime_handlers = [\"berth\"]\n":         "runtime_handlers",
		"stats_collect_period = \"100ms\"\n":       "stats_collect_period",
		"stats_collect_period = \"-1s\"\n":         "stats_collect_period",
	} {
		_, err := parse(t, file)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("file %q: err = %v, want one naming %q", file, err, want)
		}
		if _, ok := err.(*configError); err != nil && !ok {
			t.Errorf("file %q: error %T is not a configError", file, err)
		}
	}
}

func TestConfigRuntimeHandlers(t *testing.T) {
	cfg, err := parse(t, "runtime_handlers = [\"test-handler\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RuntimeHandlers) != 1 || cfg.RuntimeHandlers[0] != "test-handler" {
		t.Errorf("runtime_handlers = %q", cfg.RuntimeHandlers)
	}
}
