package imageservice

import (
	"bytes"
	"context"
	"fmt"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/registryconf"
)

// order lists the endpoints with capability c in configuration order
// (mirrors first, as containerd fetches content), those that failed to
// resolve last; first, the one that resolved, comes before the others that
// failed.
func (p *pull) order(first *endpoint, c string) []*endpoint {
	var ok, failed []*endpoint
	for _, e := range p.eps {
		switch {
		case e == first:
			ok = append(ok, e)
		case !e.host.Has(c):
		case p.failed[e]:
			failed = append(failed, e)
		default:
			ok = append(ok, e)
		}
	}
	return append(ok, failed...)
}

// resolve finds the image manifest for this host's platform, trying the
// endpoints in order: it returns the digest the image is known by (that of
// the index when there is one), the manifest and the endpoint that served it.
func (p *pull) resolve(ctx context.Context) (string, []byte, *endpoint, error) {
	var errs hostFailures
	for _, ep := range p.eps {
		if !ep.host.Has(registryconf.CapResolve) && !(p.ref.Digest != "" && ep.host.Has(registryconf.CapPull)) {
			continue
		}
		var nref name.Reference = ep.repo.Tag(p.ref.Tag)
		if p.ref.Digest != "" {
			nref = ep.repo.Digest(p.ref.Digest)
		}
		desc, err := ep.puller.Get(ctx, nref)
		if err == nil {
			var raw []byte
			if raw, err = p.platformManifest(ctx, ep, desc.MediaType, desc.Manifest); err == nil {
				return desc.Digest.String(), raw, ep, nil
			}
		}
		errs.add(ep, err)
		p.failed[ep] = true
		if ctx.Err() != nil {
			return "", nil, nil, context.Cause(ctx)
		}
		if ep.host.Mirror {
			klog.V(2).InfoS("Mirror failed, trying the next host", "ref", p.ref.String(), "mirror", ep.String(), "err", err)
		}
	}
	return "", nil, nil, errs.err()
}

func (p *pull) platformManifest(ctx context.Context, ep *endpoint, mt types.MediaType, raw []byte) ([]byte, error) {
	switch mt {
	case types.DockerManifestSchema2, types.OCIManifestSchema1:
		return raw, nil
	case types.DockerManifestList, types.OCIImageIndex:
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return nil, fmt.Errorf("%w: Docker schema 1 manifests are not supported", errdefs.ErrInvalidArgument)
	default:
		return nil, fmt.Errorf("%w: unsupported manifest media type %q", errdefs.ErrInvalidArgument, mt)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: index: %v", errdefs.ErrInvalidArgument, err)
	}
	var pick *v1.Descriptor
	for i, d := range idx.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH {
			continue
		}
		if runtime.GOARCH == "arm64" && d.Platform.Variant != "" && d.Platform.Variant != "v8" {
			continue
		}
		pick = &idx.Manifests[i]
		break
	}
	if pick == nil {
		return nil, fmt.Errorf("%w: no manifest for linux/%s in the index", errdefs.ErrNotFound, runtime.GOARCH)
	}
	var errs hostFailures
	for _, e := range p.order(ep, registryconf.CapPull) {
		desc, err := e.puller.Get(ctx, e.repo.Digest(pick.Digest.String()))
		if err == nil {
			if desc.MediaType != types.DockerManifestSchema2 && desc.MediaType != types.OCIManifestSchema1 {
				return nil, fmt.Errorf("%w: index entry %s has media type %q", errdefs.ErrInvalidArgument, pick.Digest, desc.MediaType)
			}
			return desc.Manifest, nil
		}
		errs.add(e, err)
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
	}
	return nil, errs.err()
}
