package spec

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/seccomp"
)

// The deprecated seccomp_profile_path values (kubelet annotations of old).
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default"
	profileUnconfined     = "unconfined"
	profileLocalhost      = "localhost/"
)

// Seccomp gives the container's seccomp profile, nil for none. caps are the
// container's (runtime/default keeps the rules its bounding set permits).
// The request's Seccomp field wins over the deprecated
// seccomp_profile_path; when both are unset, runtimeDefault (berthd's
// seccomp_default) chooses between runtime/default and unconfined.
// A privileged container is never confined (containerd, CRI-O and critest
// agree).
func Seccomp(sc *runtimeapi.LinuxContainerSecurityContext, caps *specs.LinuxCapabilities, runtimeDefault bool) (*specs.LinuxSeccomp, error) {
	if sc.GetPrivileged() {
		return nil, nil
	}
	if p := sc.GetSeccomp(); p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return seccomp.RuntimeDefault(caps)
		case runtimeapi.SecurityProfile_Unconfined:
			return nil, nil
		case runtimeapi.SecurityProfile_Localhost:
			return localhostSeccomp(p.GetLocalhostRef(), caps)
		default:
			return nil, invalid("unknown seccomp profile type %v", p.GetProfileType())
		}
	}
	//lint:ignore SA1019 older kubelets still send the deprecated field
	switch path := sc.GetSeccompProfilePath(); {
	case path == "":
		if runtimeDefault {
			return seccomp.RuntimeDefault(caps)
		}
		return nil, nil
	case path == profileUnconfined:
		return nil, nil
	case path == profileRuntimeDefault || path == profileDockerDefault:
		return seccomp.RuntimeDefault(caps)
	case strings.HasPrefix(path, profileLocalhost):
		return localhostSeccomp(strings.TrimPrefix(path, profileLocalhost), caps)
	default:
		return nil, invalid("unknown seccomp profile %q: want runtime/default, unconfined or localhost/<path>", path)
	}
}

// localhostSeccomp reads a profile file on the node. Its path is absolute
// (the kubelet resolves it under its seccomp directory).
func localhostSeccomp(path string, caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	if path == "" {
		return nil, invalid("a Localhost seccomp profile needs the path of a profile file")
	}
	if !filepath.IsAbs(path) {
		return nil, invalid("seccomp profile path %q is not absolute", path)
	}
	p, err := seccomp.LoadFile(filepath.Clean(path), caps)
	if err != nil {
		if errors.Is(err, seccomp.ErrInvalidProfile) {
			return nil, fmt.Errorf("%w: localhost seccomp profile: %w", errdefs.ErrInvalidArgument, err)
		}
		return nil, fmt.Errorf("localhost seccomp profile: %w", err)
	}
	return p, nil
}
