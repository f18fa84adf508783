package imageservice

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/reference"
	"github.com/berth-dev/berth/imageservice/registryconf"
	"github.com/berth-dev/berth/imageservice/unpack"
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
		return "", fmt.Errorf("pull %s: %w", ref, classify(err))
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
		return "", err
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
	var errs []error
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
		errs = append(errs, fmt.Errorf("%s: %w", ep, classify(err)))
		p.failed[ep] = true
		if ctx.Err() != nil {
			return "", nil, nil, context.Cause(ctx)
		}
		if ep.host.Mirror {
			klog.V(2).InfoS("Mirror failed, trying the next host", "ref", p.ref.String(), "mirror", ep.String(), "err", err)
		}
	}
	return "", nil, nil, lastClassified(errs)
}

// lastClassified joins the endpoints' errors; the code is that of the
// last one tried, the registry itself.
func lastClassified(errs []error) error {
	if len(errs) == 0 {
		return fmt.Errorf("%w: no registry host can resolve this reference", errdefs.ErrFailedPrecondition)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%w (tried: %s)", errs[len(errs)-1], strings.Join(msgs[:len(msgs)-1], "; "))
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
	var errs []error
	for _, e := range p.order(ep, registryconf.CapPull) {
		desc, err := e.puller.Get(ctx, e.repo.Digest(pick.Digest.String()))
		if err == nil {
			if desc.MediaType != types.DockerManifestSchema2 && desc.MediaType != types.OCIManifestSchema1 {
				return nil, fmt.Errorf("%w: index entry %s has media type %q", errdefs.ErrInvalidArgument, pick.Digest, desc.MediaType)
			}
			return desc.Manifest, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", e, classify(err)))
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
	}
	return nil, lastClassified(errs)
}

// openBlob starts a verified download of d from ep.
func (p *pull) openBlob(ctx context.Context, ep *endpoint, d v1.Descriptor) (*verifier, io.Closer, error) {
	c, err := ep.blobClient(ctx)
	if err != nil {
		return nil, nil, classify(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.blobURL(d.Digest.String()), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, classify(err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, nil, classify(err)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("%w: blob %s: registry sends %d bytes, the manifest says %d", errdefs.ErrDataLoss, d.Digest, resp.ContentLength, d.Size)
	}
	return newVerifier(resp.Body, d, p.prog), resp.Body, nil
}

func (p *pull) fetchSmallBlob(ctx context.Context, eps []*endpoint, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxConfigSize {
		return nil, fmt.Errorf("%w: blob %s of %d bytes is too large", errdefs.ErrInvalidArgument, d.Digest, d.Size)
	}
	var errs []error
	for _, ep := range eps {
		v, body, err := p.openBlob(ctx, ep, d)
		if err == nil {
			var b []byte
			b, err = io.ReadAll(v)
			body.Close()
			if err == nil {
				return b, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
	}
	return nil, lastClassified(errs)
}

// ensureLayer makes sure layer j is unpacked, fetching it once however many
// pulls need it at the same time.
func (p *pull) ensureLayer(ctx context.Context, eps []*endpoint, j layerJob) error {
	s := p.s
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		_, have := s.layers[j.chainID]
		s.mu.Unlock()
		if have {
			return nil
		}
		var mine atomic.Bool
		ch := s.flight.DoChan(j.chainID, func() (any, error) {
			mine.Store(true)
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			s.mu.Lock()
			s.fetching[j.chainID] = p.prog
			s.mu.Unlock()
			defer func() {
				s.mu.Lock()
				delete(s.fetching, j.chainID)
				s.mu.Unlock()
			}()
			return nil, p.fetchLayer(ctx, eps, j)
		})
		tick := time.NewTicker(50 * time.Millisecond)
	wait:
		select {
		case <-tick.C:
			// Waiting on another pull's fetch: its bytes are our progress.
			s.mu.Lock()
			if lp := s.fetching[j.chainID]; lp != nil && lp != p.prog {
				p.prog.follow(lp)
			}
			s.mu.Unlock()
			goto wait
		case <-ctx.Done():
			tick.Stop()
			if mine.Load() {
				// Our own fetch stops with ctx: wait until it has cleaned up.
				<-ch
			}
			return context.Cause(ctx)
		case r := <-ch:
			tick.Stop()
			if r.Err == nil {
				return nil
			}
			// Another pull fetching the same layer gave up; fetch it ourselves.
			if (errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, context.DeadlineExceeded)) && ctx.Err() == nil && attempt < 3 {
				continue
			}
			return r.Err
		}
	}
}

func (p *pull) fetchLayer(ctx context.Context, eps []*endpoint, j layerJob) error {
	var errs []error
	for _, ep := range eps {
		tmp, st, err := p.unpackFrom(ctx, ep, j)
		if err == nil {
			return p.s.addLayer(j, tmp, st)
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	return lastClassified(errs)
}

// unpackFrom streams layer j from ep through verification and
// decompression into a new temp dir, removed again on failure.
func (p *pull) unpackFrom(ctx context.Context, ep *endpoint, j layerJob) (_ string, _ unpack.Stats, err error) {
	tmp, err := os.MkdirTemp(p.s.tmpDir, "l")
	if err != nil {
		return "", unpack.Stats{}, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", unpack.Stats{}, err
	}
	v, body, err := p.openBlob(ctx, ep, j.desc)
	if err != nil {
		return "", unpack.Stats{}, err
	}
	defer body.Close()
	br := bufio.NewReaderSize(v, 256<<10)
	dec, closeDec, err := decompressor(br)
	if err != nil {
		return "", unpack.Stats{}, p.blobErr(v, fmt.Errorf("%w: layer %s: %v", errdefs.ErrInvalidArgument, j.desc.Digest, err))
	}
	defer closeDec()
	diff := sha256.New()
	tr := io.TeeReader(dec, diff)
	st, err := unpack.Unpack(ctx, tr, tmp)
	if err == nil {
		// The tar's end marker may leave padding, and the compressed stream
		// its trailer: read both to their end so both digests are checked.
		_, err = io.Copy(io.Discard, tr)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, br)
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", st, context.Cause(ctx)
		}
		return "", st, p.blobErr(v, err)
	}
	if v.err != nil {
		return "", st, v.err
	}
	if got := "sha256:" + hex.EncodeToString(diff.Sum(nil)); got != j.diffID {
		return "", st, fmt.Errorf("%w: layer %s uncompresses to %s, the config says %s", errdefs.ErrDataLoss, j.desc.Digest, got, j.diffID)
	}
	p.prog.step()
	return tmp, st, nil
}

// blobErr prefers a verification failure over what it caused downstream
// (a tampered blob shows first as a bad gzip stream or tar).
func (p *pull) blobErr(v *verifier, err error) error {
	if v.err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(v, v.size-v.n+1))
	}
	if v.err != nil {
		return v.err
	}
	return err
}

func decompressor(br *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, func() {}, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, func() {}, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// addLayer moves an unpacked layer into place and records it.
func (s *Service) addLayer(j layerJob, tmp string, st unpack.Stats) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	hexID := strings.TrimPrefix(j.chainID, "sha256:")
	used := map[string]bool{}
	for _, l := range s.layers {
		used[l.Dir] = true
	}
	dir := ""
	for _, n := range []int{16, 24, 32, 64} {
		if n <= len(hexID) && !used[hexID[:n]] {
			dir = hexID[:n]
			break
		}
	}
	if dir == "" {
		return fmt.Errorf("no free dir name for layer %s", j.chainID)
	}
	dst := filepath.Join(s.layersDir, dir)
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("move layer into place: %w", err)
	}
	rec := &layerRecord{ChainID: j.chainID, DiffID: j.diffID, Dir: dir, Size: st.Size, Inodes: st.Inodes}
	if err := s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketLayers, rec.ChainID, rec) }); err != nil {
		os.RemoveAll(dst)
		return fmt.Errorf("record layer %s: %w", j.chainID, err)
	}
	s.layers[rec.ChainID] = rec
	return nil
}

// commit records the image in one transaction, moving its tag away from
// any image that had it.
func (p *pull) commit(id, manifestDigest string, cfg []byte, jobs []layerJob) error {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &record{ID: id, ManifestDigest: manifestDigest, Config: cfg, Pulled: time.Now().UTC()}
	if old, ok := s.images[id]; ok {
		rec.RepoTags = slices.Clone(old.RepoTags)
		rec.RepoDigests = slices.Clone(old.RepoDigests)
	}
	for _, j := range jobs {
		rec.Layers = append(rec.Layers, j.chainID)
		if l, ok := s.layers[j.chainID]; ok {
			rec.Size += l.Size
		} else {
			return fmt.Errorf("layer %s vanished before commit", j.chainID)
		}
	}
	tag := ""
	if p.ref.Digest == "" {
		tag = p.ref.TagRef()
	}
	digestRef := p.ref.Name() + "@" + manifestDigest
	changed := map[string]*record{}
	for oid, o := range s.images {
		if oid == id || !slices.Contains(o.RepoTags, tag) {
			continue
		}
		no := *o
		no.RepoTags = slices.DeleteFunc(slices.Clone(o.RepoTags), func(t string) bool { return t == tag })
		changed[oid] = &no
	}
	if tag != "" && !slices.Contains(rec.RepoTags, tag) {
		rec.RepoTags = append(rec.RepoTags, tag)
	}
	if !slices.Contains(rec.RepoDigests, digestRef) {
		rec.RepoDigests = append(rec.RepoDigests, digestRef)
	}
	changed[id] = rec
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for k, r := range changed {
			if err := put(tx, bucketImages, k, r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("record image %s: %w", id, err)
	}
	for k, r := range changed {
		s.images[k] = r
	}
	return nil
}

// verifier checks a blob's size and digest while it streams.
type verifier struct {
	r      io.Reader
	h      hash.Hash
	digest string
	n      int64
	size   int64
	err    error
	prog   *progress
}

func newVerifier(r io.Reader, d v1.Descriptor, prog *progress) *verifier {
	return &verifier{r: r, h: sha256.New(), digest: d.Digest.String(), size: d.Size, prog: prog}
}

func (v *verifier) Read(b []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(b)
	v.n += int64(n)
	v.h.Write(b[:n])
	v.prog.add(n)
	if v.n > v.size {
		v.err = fmt.Errorf("%w: blob %s is larger than the %d bytes the manifest says", errdefs.ErrDataLoss, v.digest, v.size)
		return 0, v.err
	}
	switch {
	case err == io.EOF:
		if v.n < v.size {
			v.err = fmt.Errorf("%w: blob %s is truncated: %d of %d bytes", errdefs.ErrDataLoss, v.digest, v.n, v.size)
			return n, v.err
		}
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
			v.err = fmt.Errorf("%w: blob %s has digest %s", errdefs.ErrDataLoss, v.digest, got)
			return n, v.err
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		v.err = fmt.Errorf("%w: blob %s is truncated: %d of %d bytes", errdefs.ErrDataLoss, v.digest, v.n, v.size)
		return n, v.err
	case err != nil:
		v.err = classify(err)
		return n, v.err
	}
	return n, err
}

// progress counts what a pull receives; watch cancels the pull when too
// little arrives for too long.
type progress struct {
	bytes atomic.Int64
	steps atomic.Int64

	mu      sync.Mutex
	leaders []*progress // pulls fetching layers this one waits for
}

func (p *progress) add(n int) { p.bytes.Add(int64(n)) }
func (p *progress) step()     { p.steps.Add(1) }

func (p *progress) follow(l *progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Contains(p.leaders, l) {
		p.leaders = append(p.leaders, l)
	}
}

// mark only grows while the pull, or a pull it waits for, receives data.
func (p *progress) mark() int64 {
	m := p.bytes.Load() + p.steps.Load()*minProgress
	p.mu.Lock()
	for _, l := range p.leaders {
		m += l.bytes.Load() + l.steps.Load()*minProgress
	}
	p.mu.Unlock()
	return m
}

func (p *progress) watch(ctx context.Context, timeout time.Duration, cancel context.CancelCauseFunc) func() {
	done := make(chan struct{})
	go func() {
		tick := max(timeout/8, 10*time.Millisecond)
		t := time.NewTicker(tick)
		defer t.Stop()
		last, lastAt := p.mark(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				if m := p.mark(); m-last >= minProgress {
					last, lastAt = m, now
				} else if now.Sub(lastAt) >= timeout {
					cancel(fmt.Errorf("%w: pull made no progress for %v", errdefs.ErrUnavailable, timeout))
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
