package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/shim"
)

// serveOne runs handleConn on one end of a pipe and returns the other.
func serveOne(t *testing.T) net.Conn {
	t.Helper()
	client, end := net.Pipe()
	s := &server{podID: "p", started: time.Now()}
	go s.handleConn(end)
	t.Cleanup(func() { client.Close() })
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	return client
}

func TestHandlersAndUnknownOps(t *testing.T) {
	c := serveOne(t)
	enc, dec := json.NewEncoder(c), json.NewDecoder(c)
	// Several calls on one connection, in order.
	for _, op := range []string{shim.OpPing, shim.OpStatus, "no-such-op"} {
		if err := enc.Encode(shim.Request{Op: op}); err != nil {
			t.Fatal(err)
		}
		var resp shim.Response
		if err := dec.Decode(&resp); err != nil {
			t.Fatal(err)
		}
		switch op {
		case shim.OpStatus:
			var st shim.Status
			if err := json.Unmarshal(resp.Result, &st); err != nil || st.PodID != "p" || resp.Error != "" {
				t.Errorf("status: %+v %v", resp, err)
			}
		case "no-such-op":
			if resp.Code != shim.CodeUnimplemented {
				t.Errorf("unknown op answered %+v", resp)
			}
		default:
			if resp.Error != "" {
				t.Errorf("%s: %+v", op, resp)
			}
		}
	}
}

func TestStreamHandlerGetsBytesSentWithTheRequest(t *testing.T) {
	streamHandlers["test-echo"] = func(s *server, conn net.Conn, _ json.RawMessage) error {
		if err := s.answer(conn, struct{}{}, nil); err != nil {
			return err
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(conn, b); err != nil {
			return err
		}
		_, err := conn.Write(b)
		return err
	}
	defer delete(streamHandlers, "test-echo")
	c := serveOne(t)
	// The request and the first stream bytes in one write.
	go func() { _, _ = c.Write([]byte(`{"op":"test-echo"}` + "\nhello")) }()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != "{\"result\":{}}\n" {
		t.Fatalf("answer %q, %v", line, err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(r, b); err != nil || string(b) != "hello" {
		t.Errorf("echo %q, %v", b, err)
	}
}
