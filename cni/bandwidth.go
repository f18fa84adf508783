package cni

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The kubelet passes a pod's traffic limits as annotations (bit/s, as
// resource quantities such as "10M").
const (
	IngressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	EgressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// BandwidthFromAnnotations reads the pod's limits; nil when it has none.
// The burst is unlimited, as the kubelet's own network plugins did, so the
// rate alone limits.
func BandwidthFromAnnotations(annotations map[string]string) (*Bandwidth, error) {
	var bw Bandwidth
	for key, rate := range map[string]*uint64{IngressBandwidthAnnotation: &bw.IngressRate, EgressBandwidthAnnotation: &bw.EgressRate} {
		v, ok := annotations[key]
		if !ok {
			continue
		}
		n, err := parseQuantity(v)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("annotation %s=%q: not a bandwidth in bit/s", key, v)
		}
		*rate = n
	}
	if bw.IngressRate == 0 && bw.EgressRate == 0 {
		return nil, nil
	}
	if bw.IngressRate > 0 {
		bw.IngressBurst = math.MaxUint32
	}
	if bw.EgressRate > 0 {
		bw.EgressBurst = math.MaxUint32
	}
	return &bw, nil
}

// parseQuantity reads a non-negative integer resource quantity with an
// optional decimal (k M G T P E) or binary (Ki Mi Gi Ti Pi Ei) suffix.
func parseQuantity(s string) (uint64, error) {
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
	} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("%s: too large", s)
	}
	return n * mult, nil
}
