package stream

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestWebsocketRemember(t *testing.T) {
	w := &Websocket{}
	w.Remember("http://127.0.0.1:1/exec/tok1", true, true, false, true)
	w.Remember("http://127.0.0.1:1/attach/tok2", false, true, true, false)
	f, ok := w.take("tok1")
	if !ok || !f.stdin || !f.stdout || f.stderr || !f.tty {
		t.Errorf("tok1: %+v %v", f, ok)
	}
	if _, ok := w.take("tok1"); ok {
		t.Error("a URL's streams were taken twice")
	}
	// Expired entries are not served and are dropped by the next Remember.
	w.reqs["tok2"] = sessionFlags{stdout: true, expires: time.Now().Add(-time.Second)}
	if _, ok := w.take("tok2"); ok {
		t.Error("an expired URL was served")
	}
	w.reqs["old"] = sessionFlags{expires: time.Now().Add(-time.Second)}
	w.Remember("http://127.0.0.1:1/exec/tok3", false, true, false, false)
	if _, ok := w.reqs["old"]; ok || len(w.reqs) != 1 {
		t.Errorf("expired entries kept: %v", w.reqs)
	}
}

// Requests that are not websocket upgrades of the kinds the library lacks
// go to the library unchanged.
func TestWebsocketPassesOthers(t *testing.T) {
	var got []string
	w := &Websocket{Next: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = append(got, r.URL.Path) })}
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodPost, "/exec/abc", nil),
		httptest.NewRequest(http.MethodGet, "/portforward/abc", nil),
	} {
		w.ServeHTTP(httptest.NewRecorder(), r)
	}
	// A websocket v5 request for a URL nobody handed out is not found.
	r := httptest.NewRequest(http.MethodGet, "/exec/unknown", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-Websocket-Protocol", "v5.channel.k8s.io")
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, r)
	if len(got) != 2 || rec.Code != http.StatusNotFound {
		t.Errorf("passed %v; unknown v5 URL answered %d", got, rec.Code)
	}
}
