package imageservice

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-dev/berth/errdefs"
)

// hostFailures are the failures of one step of a pull (resolving the
// reference, fetching a blob), host by host in the order they were tried.
type hostFailures []hostFailure

type hostFailure struct {
	ep  *endpoint
	err error // classified
}

func (f *hostFailures) add(ep *endpoint, err error) {
	*f = append(*f, hostFailure{ep: ep, err: classify(err)})
}

// err says in one sentence what the last host tried (the registry itself:
// mirrors come first) answered, after what each host before it did, in
// order; its code is that of the last host's failure.
func (f hostFailures) err() error {
	if len(f) == 0 {
		return fmt.Errorf("%w: no registry host can resolve this reference", errdefs.ErrFailedPrecondition)
	}
	last := f[len(f)-1]
	lastSaid, _ := said(last.err)
	var b strings.Builder
	b.WriteString(last.String())
	for i, h := range f[:len(f)-1] {
		if i == 0 {
			b.WriteString(", after ")
		} else {
			b.WriteString(", then ")
		}
		if s, how := said(h.err); s == lastSaid {
			fmt.Fprintf(&b, "%s %s %s", h.role(), h.ep, map[saying]string{answered: "answered the same", failed: "failed the same way", sent: "sent the same", indexed: "sent the same"}[how])
		} else {
			b.WriteString(h.String())
		}
	}
	return &hostsError{msg: b.String(), last: last.err}
}

// hostsError reads as the sentence hostFailures.err makes, and is (for
// errors.Is) the last host's failure.
type hostsError struct {
	msg  string
	last error
}

func (e *hostsError) Error() string { return e.msg }
func (e *hostsError) Unwrap() error { return e.last }

func (h hostFailure) role() string {
	if h.ep.host.Mirror {
		return "mirror"
	}
	return "registry"
}

func (h hostFailure) String() string {
	switch s, how := said(h.err); how {
	case answered:
		return fmt.Sprintf("%s %s answered %s", h.role(), h.ep, s)
	case failed:
		return fmt.Sprintf("%s %s failed: %s", h.role(), h.ep, s)
	case indexed:
		return fmt.Sprintf("%s %s sent the image index, then %s", h.role(), h.ep, s)
	default:
		return fmt.Sprintf("%s (from %s %s)", s, h.role(), h.ep)
	}
}

// saying is how a host failed a step.
type saying int

const (
	answered saying = iota // with an HTTP error
	failed                 // to answer: the network, TLS, a timeout
	sent                   // content that is not what it should be
	indexed                // an index, whose manifest no host could send
)

// said is what a host answered in a few words: its HTTP status and the
// registry's own messages, without the request URL (whose query the client
// redacts) or the details map; or the network's error without the URL; or
// what was wrong with what it sent.
func said(err error) (string, saying) {
	var he *hostsError
	if errors.As(err, &he) {
		return he.msg, indexed
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		var msgs []string
		for _, d := range terr.Errors {
			m := strings.TrimSpace(d.Message)
			if m == "" {
				m = strings.ToLower(strings.ReplaceAll(string(d.Code), "_", " "))
			}
			if m = printable(m); !slices.Contains(msgs, m) {
				msgs = append(msgs, m)
			}
		}
		if len(msgs) == 0 {
			msgs = append(msgs, strings.ToLower(http.StatusText(terr.StatusCode)))
		}
		return fmt.Sprintf("%d %s", terr.StatusCode, strings.Join(msgs, "; ")), answered
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error(), failed
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err.Error(), failed
	}
	if errors.Is(err, errdefs.ErrUnavailable) {
		return err.Error(), failed
	}
	return err.Error(), sent
}

// printable keeps a registry's message to one short line.
func printable(s string) string {
	const limit = 200
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit]) + "…"
	}
	return s
}
