package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestCDISpecDirsConfig(t *testing.T) {
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/etc/cdi", "/var/run/cdi"}; !reflect.DeepEqual(cfg.CDISpecDirs, want) {
		t.Errorf("default cdi_spec_dirs = %v, want %v", cfg.CDISpecDirs, want)
	}
	if !strings.Contains(cfg.JSON(), `"cdiSpecDirs":["/etc/cdi","/var/run/cdi"]`) {
		t.Errorf("Status(verbose) config lacks the spec dirs: %s", cfg.JSON())
	}
	if cfg, err = parse(t, "cdi_spec_dirs = [\"/opt/cdi\"]\n"); err != nil || !reflect.DeepEqual(cfg.CDISpecDirs, []string{"/opt/cdi"}) {
		t.Errorf("cdi_spec_dirs from the file: %v, %v", cfg.CDISpecDirs, err)
	}
	if cfg, err = parse(t, "cdi_spec_dirs = []\n"); err != nil || len(cfg.CDISpecDirs) != 0 {
		t.Errorf("no spec dirs (CDI off): %v, %v", cfg.CDISpecDirs, err)
	}
	if _, err := parse(t, "cdi_spec_dirs = [\"cdi\"]\n"); err == nil || !strings.Contains(err.Error(), "cdi_spec_dirs") {
		t.Errorf("a relative spec dir: %v, want an error naming cdi_spec_dirs", err)
	}
}
