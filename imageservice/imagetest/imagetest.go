// Package imagetest builds small images in memory and serves them from an
// in-process registry, optionally behind a handler that misbehaves, for the
// image service's tests.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Entry is one tar entry of a test layer.
type Entry struct {
	Name, Link string
	Type       byte // tar.TypeReg when zero
	Body       string
	Mode       int64
	UID, GID   int
}

// Compression of a test layer.
const (
	Gzip = "gzip"
	Zstd = "zstd"
	None = "none"
)

// TarOf is the tar stream of entries.
func TarOf(t testing.TB, es ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: typ, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: time.Unix(1700000000, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
			if typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer is a v1.Layer over bytes we compressed ourselves, so that gzip, zstd
// and uncompressed layers carry the media types real registries serve.
type layer struct {
	raw, blob []byte
	mt        types.MediaType
}

func hashOf(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func (l *layer) Digest() (v1.Hash, error) { return hashOf(l.blob), nil }
func (l *layer) DiffID() (v1.Hash, error) { return hashOf(l.raw), nil }
func (l *layer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l *layer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.raw)), nil
}
func (l *layer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.mt, nil }

// Layer is a layer of entries compressed with comp.
func Layer(t testing.TB, comp string, es ...Entry) v1.Layer {
	t.Helper()
	return RawLayer(t, comp, TarOf(t, es...))
}

// RawLayer is a layer of the tar stream raw, compressed with comp.
func RawLayer(t testing.TB, comp string, raw []byte) v1.Layer {
	t.Helper()
	l := &layer{raw: raw}
	switch comp {
	case Gzip:
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(raw)
		zw.Close()
		l.blob, l.mt = b.Bytes(), types.DockerLayer
	case Zstd:
		zw, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		l.blob, l.mt = zw.EncodeAll(raw, nil), types.OCILayerZStd
		zw.Close()
	default:
		l.blob, l.mt = raw, types.OCIUncompressedLayer
	}
	return l
}

// Image is an image of layers (lowest first) with user as its config's
// User; oci selects OCI media types over Docker schema 2.
func Image(t testing.TB, oci bool, user string, layers ...v1.Layer) v1.Image {
	t.Helper()
	var img v1.Image = empty.Image
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User = user
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Index wraps img into an index that also lists another platform.
func Index(t testing.TB, img, other v1.Image) v1.ImageIndex {
	t.Helper()
	return mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
}

// Registry is an in-process registry on 127.0.0.1.
type Registry struct {
	Host  string // 127.0.0.1:port
	CAPEM []byte // the TLS registry's certificate
	// ClientCertPEM and ClientKeyPEM: a client certificate an mTLS registry accepts.
	ClientCertPEM, ClientKeyPEM []byte
	clientCert                  *tls.Certificate
	srv                         *httptest.Server
	// Wrap, when set, handles every request in front of the registry.
	Wrap func(w http.ResponseWriter, r *http.Request, next http.Handler)
}

// StartRegistry starts a registry that stops when the test ends.
func StartRegistry(t testing.TB) *Registry { return start(t, false, false) }

// StartTLSRegistry starts a registry on HTTPS with its own CA (CAPEM).
func StartTLSRegistry(t testing.TB) *Registry { return start(t, true, false) }

// StartMTLSRegistry is StartTLSRegistry that also requires a client
// certificate: ClientCertPEM and ClientKeyPEM are one it accepts.
func StartMTLSRegistry(t testing.TB) *Registry { return start(t, true, true) }

func start(t testing.TB, useTLS, clientAuth bool) *Registry {
	t.Helper()
	r := &Registry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.Wrap != nil {
			r.Wrap(w, req, reg)
			return
		}
		reg.ServeHTTP(w, req)
	})
	if useTLS {
		r.srv = httptest.NewUnstartedServer(h)
		// Handshakes that fail on purpose need no log.
		r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		if clientAuth {
			cert, certPEM, keyPEM := selfSigned(t)
			pool := x509.NewCertPool()
			pool.AddCert(cert.Leaf)
			r.srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
			r.ClientCertPEM, r.ClientKeyPEM, r.clientCert = certPEM, keyPEM, &cert
		}
		r.srv.StartTLS()
		r.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
	} else {
		r.srv = httptest.NewServer(h)
	}
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "http://"), "https://")
	return r
}

func (r *Registry) pushOpts() []remote.Option {
	if r.CAPEM == nil {
		return nil
	}
	tr := r.srv.Client().Transport.(*http.Transport).Clone()
	if r.clientCert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*r.clientCert}
	}
	return []remote.Option{remote.WithTransport(tr)}
}

func (r *Registry) nameOpts() []name.Option {
	if r.CAPEM == nil {
		return []name.Option{name.Insecure}
	}
	return nil
}

// Push uploads img as repo:tag (repo without host) and returns host/repo:tag.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repoTag, r.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	wrap := r.Wrap
	r.Wrap = nil
	defer func() { r.Wrap = wrap }()
	if err := remote.Write(ref, img, r.pushOpts()...); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// PushIndex uploads idx as repo:tag.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repoTag, r.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	wrap := r.Wrap
	r.Wrap = nil
	defer func() { r.Wrap = wrap }()
	if err := remote.WriteIndex(ref, idx, r.pushOpts()...); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// Digest is d's digest string.
func Digest(t testing.TB, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// BlobHandler is a Wrap that serves blob digest with serve and everything
// else from the registry.
func BlobHandler(digest string, serve func(w http.ResponseWriter, r *http.Request, next http.Handler)) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
			serve(w, r, next)
			return
		}
		next.ServeHTTP(w, r)
	}
}

// selfSigned makes a client certificate that is its own CA.
func selfSigned(t testing.TB) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test client"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM, keyPEM
}
