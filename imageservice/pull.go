package imageservice

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/reference"
	"github.com/berth-dev/berth/imageservice/registryconf"
)

const (
	maxConfigSize = 8 << 20
	// minProgress is what a pull must receive within the progress timeout:
	// a trickle below it is not progress.
	minProgress = 64 << 10
)

// layerJob is one layer of the image being pulled.
type layerJob struct {
	desc    v1.Descriptor
	diffID  string
	chainID string
}

type pull struct {
	s    *Service
	ref  reference.Reference
	eps  []*endpoint
	prog *progress
	auth *Auth
	// failed are the endpoints that could not resolve the reference.
	failed map[*endpoint]bool
}

// Pull pulls ref (with auth, which may be nil) and returns the image ID.
func (s *Service) Pull(ctx context.Context, refStr string, auth *Auth) (string, error) {
	ref, err := reference.Parse(refStr)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := &pull{s: s, ref: ref, prog: &progress{}, auth: auth, failed: map[*endpoint]bool{}}
	stop := p.prog.watch(ctx, s.opts.ProgressTimeout, cancel)
	defer stop()
	start := time.Now()
	id, err := p.run(ctx)
	if err != nil {
		if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
		return "", fmt.Errorf("pull %s: %w", ref, s.noSpace(classify(err)))
	}
	klog.V(2).InfoS("Pulled image", "ref", ref.String(), "id", id, "bytes", p.prog.bytes.Load(), "duration", time.Since(start))
	return id, nil
}

func (p *pull) run(ctx context.Context) (string, error) {
	hosts, err := registryconf.Load(p.s.opts.RegistryConfigDir, p.ref.Domain)
	if err != nil {
		return "", err
	}
	for _, h := range hosts {
		ep, err := newEndpoint(p.ref, h, p.authFor())
		if err != nil {
			return "", err
		}
		p.eps = append(p.eps, ep)
	}
	manifestDigest, raw, ep, err := p.resolve(ctx)
	if err != nil {
		return "", err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("%w: manifest %s: %v", errdefs.ErrInvalidArgument, manifestDigest, err)
	}
	blobEps := p.order(ep, registryconf.CapPull)
	cfgRaw, err := p.fetchSmallBlob(ctx, blobEps, m.Config)
	if err != nil {
		return "", fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return "", fmt.Errorf("%w: image config %s: %v", errdefs.ErrInvalidArgument, m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return "", fmt.Errorf("%w: image config lists %d layers, manifest %d", errdefs.ErrInvalidArgument, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	jobs := make([]layerJob, len(m.Layers))
	chain := ""
	for i, l := range m.Layers {
		if err := checkLayerType(l.MediaType); err != nil {
			return "", err
		}
		diff := cfg.RootFS.DiffIDs[i].String()
		if chain == "" {
			chain = diff
		} else {
			sum := sha256.Sum256([]byte(chain + " " + diff))
			chain = "sha256:" + hex.EncodeToString(sum[:])
		}
		jobs[i] = layerJob{desc: l, diffID: diff, chainID: chain}
	}

	s := p.s
	s.mu.Lock()
	for _, j := range jobs {
		s.pending[j.chainID]++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.unlock()
		for _, j := range jobs {
			if s.pending[j.chainID]--; s.pending[j.chainID] <= 0 {
				delete(s.pending, j.chainID)
			}
		}
		if err := s.gc(); err != nil {
			klog.ErrorS(err, "Remove unused layers after pull")
		}
	}()

	if err := s.ensureDirs(); err != nil {
		return "", s.noSpace(err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.MaxParallelLayers)
	for _, j := range jobs {
		g.Go(func() error {
			if err := p.ensureLayer(gctx, blobEps, j); err != nil {
				return fmt.Errorf("layer %s: %w", j.desc.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	id := m.Config.Digest.String()
	return id, p.commit(id, manifestDigest, cfgRaw, jobs)
}

func (p *pull) authFor() *Auth { return p.auth }

func checkLayerType(mt types.MediaType) error {
	switch mt {
	case types.DockerLayer, types.DockerForeignLayer, types.DockerUncompressedLayer,
		types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
		types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return nil
	}
	return fmt.Errorf("%w: unsupported layer media type %q", errdefs.ErrInvalidArgument, mt)
}
