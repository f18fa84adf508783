package cri

import (
	"sync"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/sandbox"
)

// The kubelet lists every pod and container every second. Building each
// item's message and encoding it (labels and annotations are maps, which
// protobuf encodes by reflection, and gRPC sizes a reply before encoding
// it) cost more than the rest of the call together; replyCache does both
// once per version of a container record, and once per pod and state, and
// Codec writes the cached encodings. The messages are shared by every
// reply: nothing may change them once built.
type replyCache struct {
	mu   sync.Mutex
	gen  uint64 // counts the calls, for pruning
	ctrs map[string]*ctrEntry
	pods map[string]*podEntry
}

type ctrEntry struct {
	rec  *container.Record // records are replaced, never changed, on update
	msg  *runtimeapi.Container
	wire []byte // nil: encode msg when sending
	seen uint64
}

// podEntry holds a pod's message by state: a pod's metadata, labels,
// annotations, handler and creation time never change, its readiness does.
type podEntry struct {
	created int64 // a different pod that took the id of a gone one
	msg     [2]*runtimeapi.PodSandbox
	wire    [2][]byte
	seen    uint64
}

// containers is the messages of recs, built and encoded where the record
// is new. all says recs is every container, so entries of the others are
// of containers gone.
func (c *replyCache) containers(recs []*container.Record, all bool) []*runtimeapi.Container {
	out := make([]*runtimeapi.Container, len(recs))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctrs == nil {
		c.ctrs = make(map[string]*ctrEntry, len(recs))
	}
	c.gen++
	for i, r := range recs {
		e := c.ctrs[r.ID]
		if e == nil || e.rec != r {
			msg := toContainer(r)
			wire, err := proto.Marshal(msg)
			if err != nil {
				wire = nil
			}
			e = &ctrEntry{rec: r, msg: msg, wire: wire}
			c.ctrs[r.ID] = e
		}
		e.seen = c.gen
		out[i] = e.msg
	}
	if all && len(c.ctrs) > len(recs) {
		for id, e := range c.ctrs {
			if e.seen != c.gen {
				delete(c.ctrs, id)
			}
		}
	}
	return out
}

// podSandboxes is containers for pods.
func (c *replyCache) podSandboxes(sts []*sandbox.Status, all bool) []*runtimeapi.PodSandbox {
	out := make([]*runtimeapi.PodSandbox, len(sts))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pods == nil {
		c.pods = make(map[string]*podEntry, len(sts))
	}
	c.gen++
	for i, st := range sts {
		created := st.CreatedAt.UnixNano()
		e := c.pods[st.ID]
		if e == nil || e.created != created {
			e = &podEntry{created: created}
			c.pods[st.ID] = e
		}
		k := 0
		if st.Ready {
			k = 1
		}
		if e.msg[k] == nil {
			e.msg[k] = toPodSandbox(st)
			if w, err := proto.Marshal(e.msg[k]); err == nil {
				e.wire[k] = w
			}
		}
		e.seen = c.gen
		out[i] = e.msg[k]
	}
	if all && len(c.pods) > len(sts) {
		for id, e := range c.pods {
			if e.seen != c.gen {
				delete(c.pods, id)
			}
		}
	}
	return out
}

// containerWires are the cached encodings of msgs; nil for a message not
// (or no longer) in the cache.
func (c *replyCache) containerWires(msgs []*runtimeapi.Container) [][]byte {
	out := make([][]byte, len(msgs))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range msgs {
		if e := c.ctrs[m.GetId()]; e != nil && e.msg == m {
			out[i] = e.wire
		}
	}
	return out
}

// podWires is containerWires for pods.
func (c *replyCache) podWires(msgs []*runtimeapi.PodSandbox) [][]byte {
	out := make([][]byte, len(msgs))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range msgs {
		e := c.pods[m.GetId()]
		if e == nil {
			continue
		}
		for k := range e.msg {
			if e.msg[k] == m {
				out[i] = e.wire[k]
			}
		}
	}
	return out
}
