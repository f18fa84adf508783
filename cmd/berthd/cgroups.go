package main

import (
	"context"
	"time"

	"github.com/berth-dev/berth/runtime/cgroups"
)

// newCgroupDriver is the pods' cgroup driver of the config: nil for
// cgroupfs (the sandbox package's own), or a connection to systemd, which
// fails clearly where systemd does not run.
func newCgroupDriver(cfg Config) (cgroups.Manager, error) {
	if cfg.CgroupDriver != "systemd" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sd, err := cgroups.NewSystemd(ctx)
	if err != nil {
		return nil, err
	}
	// The connection lives as long as berthd.
	return sd, nil
}
