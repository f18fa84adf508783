package container

import (
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/runtime/seccomp/filter"
)

// seccompPrograms compiles each seccomp profile once per berthd.
var seccompPrograms filter.Cache

// writeSeccomp puts the spec's seccomp profile, compiled, next to its
// config.json (filter.BundleFile), for the shim to hand to the container's
// init and every exec. A profile that does not compile is left to the shim,
// which compiles it itself and reports why it cannot.
func writeSeccomp(bundle string, s *specs.Spec) error {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return nil
	}
	data, err := seccompPrograms.Encoded(s.Linux.Seccomp)
	if err != nil {
		klog.V(2).InfoS("Seccomp profile left to the shim", "bundle", bundle, "err", err)
		return nil
	}
	return os.WriteFile(filepath.Join(bundle, filter.BundleFile), data, 0o600)
}
