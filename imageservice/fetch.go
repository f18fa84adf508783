package imageservice

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/unpack"
)

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
	var errs hostFailures
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
		errs.add(ep, err)
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
	}
	return nil, errs.err()
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
	var errs hostFailures
	for _, ep := range eps {
		tmp, st, err := p.unpackFrom(ctx, ep, j)
		if err == nil {
			if err := p.s.addLayer(j, tmp, st); err != nil {
				os.RemoveAll(tmp)
				return err
			}
			return nil
		}
		if errdefs.IsNoSpace(err) {
			// Our disk is full, whichever host sends the layer: trying
			// the next one would only fill it again.
			return p.s.noSpace(err)
		}
		errs.add(ep, err)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	return errs.err()
}

// unpackFrom streams layer j from ep through verification and
// decompression into a new temp dir, removed again on failure.
func (p *pull) unpackFrom(ctx context.Context, ep *endpoint, j layerJob) (_ string, _ unpack.Stats, err error) {
	tmp, err := os.MkdirTemp(p.s.tmpDir, "l")
	if err != nil {
		return "", unpack.Stats{}, p.s.noSpace(err)
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
		if errdefs.IsNoSpace(err) {
			// Not the blob's fault: do not download the rest to check it.
			return "", st, p.s.noSpace(err)
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
