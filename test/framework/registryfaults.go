package framework

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Faults for the tests of failing pulls. Each is a RegistryOption; several
// compose (the later one sees the request first). digest selects the blob
// ("sha256:..."); "" means every blob.

// isBlobGet tells whether r fetches the blob digest (or any blob).
func isBlobGet(r *http.Request, digest string) bool {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
		return false
	}
	return digest == "" || strings.HasSuffix(r.URL.Path, "/blobs/"+digest)
}

// WithCorruptBlob serves the blob with its first byte changed: right size,
// wrong digest.
func WithCorruptBlob(digest string) RegistryOption {
	return WithRegistryWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isBlobGet(r, digest) {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(&corruptWriter{ResponseWriter: w}, r)
		})
	})
}

type corruptWriter struct {
	http.ResponseWriter
	done bool
}

func (c *corruptWriter) Write(p []byte) (int, error) {
	if !c.done && len(p) > 0 {
		c.done = true
		q := append([]byte{p[0] ^ 0xff}, p[1:]...)
		return c.ResponseWriter.Write(q)
	}
	return c.ResponseWriter.Write(p)
}

// WithTruncatedBlob sends the blob's first n bytes, announcing its full
// length, then drops the connection.
func WithTruncatedBlob(digest string, n int64) RegistryOption {
	return withSlowBlob(digest, n, 0, 0, true)
}

// WithStalledBlob sends the blob's first n bytes and then nothing until the
// client gives up.
func WithStalledBlob(digest string, n int64) RegistryOption {
	return withSlowBlob(digest, n, 0, 0, false)
}

// WithTrickledBlob sends the blob's first n bytes, then one byte every
// interval: a pull that moves but makes no real progress.
func WithTrickledBlob(digest string, n int64, interval time.Duration) RegistryOption {
	return withSlowBlob(digest, n, 1, interval, false)
}

func withSlowBlob(digest string, n int64, chunk int, every time.Duration, drop bool) RegistryOption {
	return WithRegistryWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isBlobGet(r, digest) {
				next.ServeHTTP(w, r)
				return
			}
			rec := &bufferWriter{header: http.Header{}}
			next.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status())
			body := rec.buf.Bytes()
			if int64(len(body)) < n {
				n = int64(len(body))
			}
			_, _ = w.Write(body[:n])
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			if drop {
				panic(http.ErrAbortHandler) // closes the connection mid-body
			}
			rest := body[n:]
			for {
				if chunk == 0 || len(rest) == 0 {
					<-r.Context().Done()
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(every):
				}
				c := min(chunk, len(rest))
				if _, err := w.Write(rest[:c]); err != nil {
					return
				}
				rest = rest[c:]
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
		})
	})
}

type bufferWriter struct {
	header http.Header
	code   int
	buf    bytes.Buffer
}

func (b *bufferWriter) Header() http.Header         { return b.header }
func (b *bufferWriter) WriteHeader(code int)        { b.code = code }
func (b *bufferWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *bufferWriter) status() int {
	if b.code == 0 {
		return http.StatusOK
	}
	return b.code
}

// WithMissingBlob answers 404 BLOB_UNKNOWN for the blob.
func WithMissingBlob(digest string) RegistryOption {
	return WithRegistryWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
				strings.Contains(r.URL.Path, "/blobs/") && (digest == "" || strings.HasSuffix(r.URL.Path, "/blobs/"+digest)) {
				registryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
				return
			}
			next.ServeHTTP(w, r)
		})
	})
}

func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// WithBasicAuth makes every /v2/ request need HTTP basic credentials.
func WithBasicAuth(user, password string) RegistryOption {
	return WithRegistryWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); ok && u == user && p == password {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
			registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		})
	})
}

// TokenAuth configures the Docker registry token flow of WithTokenAuth.
type TokenAuth struct {
	User, Password string // accepted by the token endpoint (basic auth or grant_type=password)
	IdentityToken  string // accepted as refresh_token by POST /token (grant_type=refresh_token)
	RegistryToken  string // the bearer token /token issues and /v2/ accepts
}

// WithTokenAuth makes every /v2/ request need "Authorization: Bearer
// <RegistryToken>", answering 401 with a Bearer challenge whose realm is the
// registry's own /token endpoint, as Docker Hub and most registries do.
func WithTokenAuth(a TokenAuth) RegistryOption {
	return WithRegistryWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				a.serveToken(w, r)
				return
			}
			if r.Header.Get("Authorization") == "Bearer "+a.RegistryToken {
				next.ServeHTTP(w, r)
				return
			}
			scope := ""
			if parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v2/"), "/"); len(parts) > 2 {
				scope = fmt.Sprintf(`,scope="repository:%s:pull"`, strings.Join(parts[:len(parts)-2], "/"))
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="berth-test"%s`, r.Host, scope))
			registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		})
	})
}

func (a TokenAuth) serveToken(w http.ResponseWriter, r *http.Request) {
	ok := false
	if u, p, basic := r.BasicAuth(); basic && u == a.User && p == a.Password {
		ok = true
	}
	if r.Method == http.MethodPost {
		_ = r.ParseForm()
		switch r.PostForm.Get("grant_type") {
		case "password":
			ok = ok || (r.PostForm.Get("username") == a.User && r.PostForm.Get("password") == a.Password)
		case "refresh_token":
			ok = ok || (a.IdentityToken != "" && r.PostForm.Get("refresh_token") == a.IdentityToken)
		}
	}
	if !ok {
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "bad credentials")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": a.RegistryToken, "access_token": a.RegistryToken, "expires_in": 300,
	})
}

// requestCounter counts GETs of blobs and manifests by path.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			c.mu.Lock()
			c.n[r.URL.Path]++
			c.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// BlobGets is how many times the blob digest has been fetched (GET) from
// this registry, by any repository: to check that concurrent pulls fetch a
// shared layer once.
func (r *Registry) BlobGets(digest string) int {
	r.counter.mu.Lock()
	defer r.counter.mu.Unlock()
	n := 0
	for p, c := range r.counter.n {
		if strings.HasSuffix(p, "/blobs/"+digest) {
			n += c
		}
	}
	return n
}

// TarFile is one entry of a layer made by TarLayer.
type TarFile struct {
	Name     string
	Type     byte  // tar.TypeReg when 0
	Mode     int64 // 0644 (0755 for dirs) when 0
	UID, GID int
	Linkname string
	Body     string
}

// TarLayer makes a gzip layer of exactly the given entries, in order and
// unchecked: for layers a puller must refuse (../ names, absolute names,
// writes through symlinks) as much as for good ones.
func TarLayer(t testing.TB, files ...TarFile) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ, mode := f.Type, f.Mode
		if typ == 0 {
			typ = tar.TypeReg
		}
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Typeflag: typ, Name: f.Name, Linkname: f.Linkname, Mode: mode, Uid: f.UID, Gid: f.GID, ModTime: time.Unix(0, 0)}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar %s: %v", f.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, f.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
