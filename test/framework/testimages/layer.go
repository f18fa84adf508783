package testimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// epoch is the time of every file and config, so that the same inputs give
// the same digests on every machine and every run.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// file is one tar entry of a layer.
type file struct {
	name     string // without leading slash
	typ      byte   // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink
	mode     int64  // permission bits plus setuid/setgid/sticky
	uid, gid int
	link     string // target of a symlink or hard link
	data     []byte
}

func dir(name string, mode int64, uid, gid int) file {
	return file{name: name, typ: tar.TypeDir, mode: mode, uid: uid, gid: gid}
}

func reg(name string, mode int64, uid, gid int, data []byte) file {
	return file{name: name, typ: tar.TypeReg, mode: mode, uid: uid, gid: gid, data: data}
}

func text(name, content string) file { return reg(name, 0o644, 0, 0, []byte(content)) }

func symlink(name, target string) file {
	return file{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

func hardlink(name, target string) file {
	return file{name: name, typ: tar.TypeLink, mode: 0o755, link: target}
}

// whiteout deletes name of a lower layer; opaque hides everything a lower
// layer has under dir (the OCI image spec's .wh. and .wh..wh..opq markers).
func whiteout(name string) file {
	return reg(path.Join(path.Dir(name), ".wh."+path.Base(name)), 0o644, 0, 0, nil)
}

func opaque(dir string) file { return reg(path.Join(dir, ".wh..wh..opq"), 0o644, 0, 0, nil) }

// hostFile copies a file of this machine (e.g. of an installed Debian package).
func hostFile(name, src string, mode int64) (file, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return file{}, fmt.Errorf("read %s for /%s: %w", src, name, err)
	}
	return reg(name, mode, 0, 0, b), nil
}

// tarball writes files in the order given, with missing parent directories
// added first (root-owned, 0755) as image builders do.
func tarBytes(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	have := map[string]bool{}
	for _, f := range files {
		if f.typ == tar.TypeDir {
			have[f.name] = true
		}
	}
	var parents []string
	for _, f := range files {
		for d := path.Dir(f.name); d != "." && d != "/" && !have[d]; d = path.Dir(d) {
			have[d] = true
			parents = append(parents, d)
		}
	}
	sort.Strings(parents)
	all := make([]file, 0, len(parents)+len(files))
	for _, d := range parents {
		all = append(all, dir(d, 0o755, 0, 0))
	}
	all = append(all, files...)
	for _, f := range all {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		name := f.name
		if typ == tar.TypeDir {
			name += "/"
		}
		h := &tar.Header{
			Typeflag: typ,
			Name:     name,
			Linkname: f.link,
			Mode:     f.mode,
			Uid:      f.uid,
			Gid:      f.gid,
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", f.name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// compress is how a layer's blob is stored in the registry.
type compress int

const (
	gzipped compress = iota
	zstded
	uncompressed
)

// newLayer builds a layer of files with the given blob format and media type.
func newLayer(files []file, c compress, mt types.MediaType) (v1.Layer, error) {
	raw, err := tarBytes(files)
	if err != nil {
		return nil, err
	}
	return layerFromTar(raw, c, mt)
}

func layerFromTar(raw []byte, c compress, mt types.MediaType) (v1.Layer, error) {
	switch c {
	case uncompressed:
		return static.NewLayer(raw, mt), nil
	case zstded:
		// One encoder goroutine: the blob must come out byte for byte the
		// same every time it is written.
		var zb bytes.Buffer
		zw, err := zstd.NewWriter(&zb, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return tarball.LayerFromOpener(opener(zb.Bytes()), tarball.WithCompression(compression.ZStd), tarball.WithMediaType(mt))
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(opener(gz.Bytes()), tarball.WithMediaType(mt))
}

func opener(b []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}
