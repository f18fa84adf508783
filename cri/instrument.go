package cri

import (
	"context"
	"path"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/cri/metrics"
)

// UnaryInterceptor gives every RPC the same logging and error mapping, so
// handlers stay thin and return domain errors.
func UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	method := path.Base(info.FullMethod)
	if v := klog.V(5); v.Enabled() {
		v.InfoS("CRI request", "method", method, "request", req)
	}
	resp, err := handler(ctx, req)
	err = toStatus(err)
	metrics.ObserveRPC(method, status.Code(err).String(), time.Since(start))
	if err != nil {
		klog.V(2).InfoS("CRI call failed", "method", method, "duration", time.Since(start), "err", err)
	} else {
		klog.V(4).InfoS("CRI call", "method", method, "duration", time.Since(start))
	}
	return resp, err
}

// StreamInterceptor is UnaryInterceptor for server-streaming RPCs.
func StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	method := path.Base(info.FullMethod)
	err := toStatus(handler(srv, ss))
	metrics.ObserveRPC(method, status.Code(err).String(), time.Since(start))
	if err != nil {
		klog.V(2).InfoS("CRI stream failed", "method", method, "duration", time.Since(start), "err", err)
	} else {
		klog.V(4).InfoS("CRI stream", "method", method, "duration", time.Since(start))
	}
	return err
}
