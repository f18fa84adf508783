package cri

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec Codec wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Codec is gRPC's protobuf codec that writes the List replies' items from
// their cached encodings (replycache.go). The bytes are the ones protobuf
// would write: an item is a length-delimited field 1 in both replies.
// berthd's gRPC server uses it (grpc.ForceServerCodecV2).
func (s *Server) Codec() encoding.CodecV2 {
	return codec{base: encoding.GetCodecV2("proto"), cache: &s.replies}
}

type codec struct {
	base  encoding.CodecV2
	cache *replyCache
}

func (c codec) Name() string { return c.base.Name() }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	switch r := v.(type) {
	case *runtimeapi.ListContainersResponse:
		if len(r.ProtoReflect().GetUnknown()) == 0 {
			return items(r.Containers, c.cache.containerWires(r.Containers))
		}
	case *runtimeapi.ListPodSandboxResponse:
		if len(r.ProtoReflect().GetUnknown()) == 0 {
			return items(r.Items, c.cache.podWires(r.Items))
		}
	}
	return c.base.Marshal(v)
}

// items encodes a reply whose only field is msgs, as field 1, from wires
// where they are cached.
func items[M proto.Message](msgs []M, wires [][]byte) (mem.BufferSlice, error) {
	size := 0
	for i, m := range msgs {
		if wires[i] == nil {
			w, err := proto.Marshal(m)
			if err != nil {
				return nil, fmt.Errorf("encode reply item %d: %w", i, err)
			}
			wires[i] = w
		}
		size += protowire.SizeTag(1) + protowire.SizeBytes(len(wires[i]))
	}
	var buf *[]byte
	pool := mem.DefaultBufferPool()
	if mem.IsBelowBufferPoolingThreshold(size) {
		b := make([]byte, 0, size)
		buf = &b
	} else {
		buf = pool.Get(size)
		*buf = (*buf)[:0]
	}
	b := *buf
	for _, w := range wires {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, w)
	}
	*buf = b
	if mem.IsBelowBufferPoolingThreshold(size) {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}
