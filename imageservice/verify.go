package imageservice

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/errdefs"
)

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
