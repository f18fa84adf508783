package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/cri/metrics"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/sandbox"
)

// startMetricsServer serves Prometheus metrics on cfg.MetricsAddress (no
// server when it is empty) at /metrics.
func startMetricsServer(cfg Config, pods *sandbox.Manager, containers *container.Manager) (stop func(), err error) {
	if cfg.MetricsAddress == "" {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", cfg.MetricsAddress)
	if err != nil {
		return nil, fmt.Errorf("metrics_address %s: %w", cfg.MetricsAddress, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(func() metrics.Counts {
		return countObjects(pods, containers)
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Metrics server stopped")
		}
	}()
	klog.InfoS("Serving metrics", "address", lis.Addr().String())
	return func() { _ = srv.Close() }, nil
}

func countObjects(pods *sandbox.Manager, containers *container.Manager) metrics.Counts {
	n := metrics.Counts{
		Pods:       map[string]int{"ready": 0, "notready": 0},
		Containers: map[string]int{},
	}
	for _, st := range pods.List(sandbox.Filter{}) {
		if st.Ready {
			n.Pods["ready"]++
		} else {
			n.Pods["notready"]++
		}
	}
	for _, s := range []container.State{container.Created, container.Running, container.Exited, container.Unknown} {
		n.Containers[s.String()] = 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range containers.List(ctx, container.Filter{}) {
		n.Containers[r.Status.State.String()]++
	}
	return n
}
