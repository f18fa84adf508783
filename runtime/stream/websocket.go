package stream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// Websocket clients (client-go's websocket executor, kubectl's default
// since Kubernetes 1.31) speak protocols that k8s.io/cri-streaming does not
// serve: remote command v5 ("v5.channel.k8s.io": v4 plus the close of
// stdin) and port-forward as SPDY tunneled in websocket messages
// ("SPDY/3.1+portforward.k8s.io"). Websocket serves them in front of the
// library, as the API server does in front of a kubelet: a v5 session is
// relayed to an SPDY v4 session of the library on the same single-use URL,
// a tunnel is handed to the library's SPDY port-forward as its connection.
// Both ends' framing is the libraries' (wsstream, spdy).
type Websocket struct {
	// Next is the library's server; Self its base URL (http://host:port).
	Next        http.Handler
	Self        string
	IdleTimeout time.Duration

	mu   sync.Mutex
	reqs map[string]sessionFlags
}

// sessionFlags are the streams a URL's session was asked with: the
// library's SPDY session expects exactly those streams.
type sessionFlags struct {
	stdin, stdout, stderr, tty bool
	expires                    time.Time
}

// urlTTL outlives the library's token (a minute): the library decides
// whether a token is still good.
const urlTTL = 2 * time.Minute

// Remember records the streams of an exec or attach URL the library handed
// out.
func (w *Websocket) Remember(rawURL string, stdin, stdout, stderr, tty bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reqs == nil {
		w.reqs = map[string]sessionFlags{}
	}
	now := time.Now()
	for k, f := range w.reqs {
		if now.After(f.expires) {
			delete(w.reqs, k)
		}
	}
	w.reqs[path.Base(rawURL)] = sessionFlags{stdin, stdout, stderr, tty, now.Add(urlTTL)}
}

func (w *Websocket) take(token string) (sessionFlags, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, ok := w.reqs[token]
	delete(w.reqs, token)
	return f, ok && time.Now().Before(f.expires)
}

func (w *Websocket) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	kind := path.Base(path.Dir(req.URL.Path))
	switch {
	case (kind == "exec" || kind == "attach") && wsstream.IsWebSocketRequestWithStreamCloseProtocol(req):
		w.serveRemoteCommand(rw, req)
	case kind == "portforward" && wsstream.IsWebSocketRequestWithTunnelingProtocol(req):
		w.serveTunnel(rw, req)
	default:
		w.Next.ServeHTTP(rw, req)
	}
}

const (
	v5Protocol = "v5.channel.k8s.io"
	v4Protocol = "v4.channel.k8s.io"
	// Channels of the websocket remote command protocols.
	chStdin, chStdout, chStderr, chError, chResize = 0, 1, 2, 3, 4
)

func (w *Websocket) serveRemoteCommand(rw http.ResponseWriter, req *http.Request) {
	flags, ok := w.take(path.Base(req.URL.Path))
	if !ok {
		http.NotFound(rw, req)
		return
	}
	// The SPDY session first: a spent or unknown token is an HTTP error
	// before the client's upgrade.
	sconn, err := w.dialSelf(req, v4Protocol)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusNotFound)
		return
	}
	defer sconn.Close()
	create := func(typ string) httpstream.Stream {
		h := http.Header{}
		h.Set("streamType", typ)
		s, err := sconn.CreateStream(h)
		if err != nil {
			klog.V(2).InfoS("Websocket session: create stream", "type", typ, "err", err)
			return nil
		}
		return s
	}
	sErr := create("error")
	var sIn, sOut, sErrOut, sResize httpstream.Stream
	if flags.stdin {
		sIn = create("stdin")
	}
	if flags.stdout {
		sOut = create("stdout")
	}
	if flags.stderr && !flags.tty {
		sErrOut = create("stderr")
	}
	if flags.tty {
		sResize = create("resize")
	}
	for _, s := range []httpstream.Stream{sErr, sOut, sErrOut} {
		if s != nil {
			_ = s.Close() // nothing to send on these
		}
	}
	if sErr == nil || (flags.stdin && sIn == nil) || (flags.stdout && sOut == nil) {
		http.Error(rw, "could not set up the session", http.StatusInternalServerError)
		return
	}

	wconn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		v5Protocol: {Binary: true, Channels: []wsstream.ChannelType{
			wsstream.ReadChannel, wsstream.WriteChannel, wsstream.WriteChannel, wsstream.WriteChannel, wsstream.ReadChannel,
		}},
	})
	wconn.SetIdleTimeout(w.IdleTimeout)
	_, ws, err := wconn.Open(rw, req)
	if err != nil {
		klog.V(2).InfoS("Websocket session: upgrade", "err", err)
		return
	}
	defer wconn.Close()
	// The client learns that the session is set up from a first, empty
	// message (as the library's websocket sessions do).
	switch {
	case flags.stdout:
		_, _ = ws[chStdout].Write(nil)
	case flags.stderr:
		_, _ = ws[chStderr].Write(nil)
	default:
		_, _ = ws[chError].Write(nil)
	}

	if sIn != nil {
		go func() {
			_, _ = io.Copy(sIn, ws[chStdin])
			_ = sIn.Close()
		}()
	}
	if sResize != nil {
		go func() { _, _ = io.Copy(sResize, ws[chResize]) }()
	}
	var outputs sync.WaitGroup
	for _, p := range []struct {
		src httpstream.Stream
		ch  int
	}{{sOut, chStdout}, {sErrOut, chStderr}} {
		if p.src == nil {
			continue
		}
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			_, _ = io.Copy(ws[p.ch], p.src)
		}()
	}
	// The status comes last, after all the output: the client stops
	// reading once it has it.
	status, _ := io.ReadAll(sErr)
	outputs.Wait()
	if len(status) > 0 {
		_, _ = ws[chError].Write(status)
	}
}

// dialSelf opens an SPDY connection to the library on the request's URL.
func (w *Websocket) dialSelf(req *http.Request, protocol string) (httpstream.Connection, error) {
	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		return nil, err
	}
	sreq, err := http.NewRequestWithContext(req.Context(), http.MethodPost, w.Self+req.URL.Path, nil)
	if err != nil {
		return nil, err
	}
	sreq.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	resp, err := rt.RoundTrip(sreq)
	if err != nil {
		return nil, err
	}
	return rt.NewConnection(resp)
}

// tunnelPrefix marks a websocket subprotocol that tunnels SPDY.
const tunnelPrefix = "SPDY/3.1+"

// serveTunnel accepts the websocket and hands it, as the connection the
// SPDY upgrade hijacks, to the library's port-forward.
func (w *Websocket) serveTunnel(rw http.ResponseWriter, req *http.Request) {
	var inner string
	srv := websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			for _, p := range cfg.Protocol {
				if strings.HasPrefix(p, tunnelPrefix) {
					cfg.Protocol = []string{p}
					inner = strings.TrimPrefix(p, tunnelPrefix)
					return nil
				}
			}
			return errNoTunnelProtocol
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame
			r := req.Clone(req.Context())
			r.Method = http.MethodPost
			r.Header = http.Header{}
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "SPDY/3.1")
			r.Header.Set(httpstream.HeaderProtocolVersion, inner)
			w.Next.ServeHTTP(&tunnelWriter{conn: ws, header: http.Header{}}, r)
		},
	}
	srv.ServeHTTP(rw, req)
}

var errNoTunnelProtocol = errors.New("no SPDY tunneling subprotocol asked for")

// tunnelWriter is the response of the tunneled SPDY upgrade: its status
// line and headers go nowhere (the client takes the websocket as the
// upgraded connection), and hijacking it yields the websocket.
type tunnelWriter struct {
	conn   net.Conn
	header http.Header
}

func (t *tunnelWriter) Header() http.Header         { return t.header }
func (t *tunnelWriter) WriteHeader(int)             {}
func (t *tunnelWriter) Write(p []byte) (int, error) { return len(p), nil }

func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}
