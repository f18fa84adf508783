package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pullImage is the ~100 MB, 5-layer image (the test images' BenchRef),
// reached through the runtime's registry mirror configuration.
var pullImage = flag.String("pull-image", envOr("BERTH_BENCH_PULL_IMAGE", "berth.test/bench/big:latest"),
	"image the pull benchmark pulls (env BERTH_BENCH_PULL_IMAGE)")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Pull and unpack from a cold store: the image is removed before each of
// three pulls, so every run downloads and unpacks all its layers.
func init() {
	register("pull", func(e *env) error {
		spec := &runtimeapi.ImageSpec{Image: *pullImage}
		remove := func() error {
			st, err := e.images.ImageStatus(e.ctx, &runtimeapi.ImageStatusRequest{Image: spec})
			if err != nil || st.GetImage() == nil {
				return err
			}
			_, err = e.images.RemoveImage(e.ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: st.Image.Id}})
			return err
		}
		var ds []time.Duration
		var size uint64
		for i := 0; i < 3; i++ {
			if err := remove(); err != nil {
				return fmt.Errorf("remove %s: %w", *pullImage, err)
			}
			start := time.Now()
			if _, err := e.images.PullImage(e.ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
				return fmt.Errorf("pull %s (is the test registry serving it and the runtime's mirror config pointing there?): %w", *pullImage, err)
			}
			ds = append(ds, time.Since(start))
			if st, err := e.images.ImageStatus(e.ctx, &runtimeapi.ImageStatusRequest{Image: spec}); err == nil && st.GetImage() != nil {
				size = st.Image.Size
			}
		}
		if err := remove(); err != nil {
			return fmt.Errorf("remove %s: %w", *pullImage, err)
		}
		summary(fmt.Sprintf("pull %d MB image", size>>20), ds)
		return nil
	})
}
