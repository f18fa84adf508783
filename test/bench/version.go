package main

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI round trip itself: the floor under every other number.
func init() {
	register("version", func(e *env) error {
		var ds []time.Duration
		for i := 0; i < 200; i++ {
			start := time.Now()
			if _, err := e.runtime.Version(e.ctx, &runtimeapi.VersionRequest{}); err != nil {
				return err
			}
			ds = append(ds, time.Since(start))
		}
		summary("Version round trip", ds)
		return nil
	})
}
