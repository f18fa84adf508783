package shim

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	big := bytes.Repeat([]byte("x"), MaxFrame+10)
	if _, err := fw.Stream(FrameStdout).Write(big); err != nil {
		t.Fatal(err)
	}
	_ = fw.Frame(FrameResize, ResizePayload(120, 40))
	_ = fw.Frame(FrameExit, ExitPayload(-1))
	_ = fw.Frame(FrameStdinClose, nil)

	var got []byte
	for range 2 {
		typ, p, err := ReadFrame(&buf, nil)
		if err != nil || typ != FrameStdout {
			t.Fatalf("frame %c: %v", typ, err)
		}
		got = append(got, p...)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("a write over MaxFrame came back as %d bytes", len(got))
	}
	typ, p, _ := ReadFrame(&buf, make([]byte, 64))
	if w, h, ok := ParseResize(p); typ != FrameResize || !ok || w != 120 || h != 40 {
		t.Errorf("resize %c %d×%d %v", typ, w, h, ok)
	}
	typ, p, _ = ReadFrame(&buf, nil)
	if code, ok := ParseExit(p); typ != FrameExit || !ok || code != -1 {
		t.Errorf("exit %c %d %v", typ, code, ok)
	}
	if typ, p, err := ReadFrame(&buf, nil); typ != FrameStdinClose || len(p) != 0 || err != nil {
		t.Errorf("stdin close %c %q %v", typ, p, err)
	}
	if _, _, err := ReadFrame(&buf, nil); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v", err)
	}
	// A truncated frame, and one that claims too much.
	_ = WriteFrame(&buf, FrameStdin, []byte("abc"))
	buf.Truncate(buf.Len() - 1)
	if _, _, err := ReadFrame(&buf, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{'o', 0xff, 0, 0, 0}), nil); err == nil {
		t.Error("an oversized frame was read")
	}
}
