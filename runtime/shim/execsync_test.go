package shim

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestOutputBudget: whatever the order and size of the chunks, each
// stream keeps its beginning, the two fit the limit, and each gets its
// half or all it wrote.
func TestOutputBudget(t *testing.T) {
	const limit = 1000
	for _, c := range []struct{ out, err int }{
		{0, 0}, {10, 20}, {600, 300}, {4000, 10}, {10, 4000}, {4000, 4000}, {499, 2000}, {501, 501}, {1000, 0}, {1001, 1},
	} {
		streams := [2][]byte{bytes.Repeat([]byte("o"), c.out), bytes.Repeat([]byte("e"), c.err)}
		for i := range streams[0] {
			streams[0][i] = byte('a' + i%26)
		}
		for i := range streams[1] {
			streams[1][i] = byte('A' + i%26)
		}
		want := [2]int{min(c.out, max(limit/2, limit-c.err)), min(c.err, max(limit-limit/2, limit-c.out))}
		for seed := range uint64(20) {
			r := rand.New(rand.NewPCG(seed, 7))
			o := NewOutputBudget(limit)
			var off [2]int
			for off[0] < c.out || off[1] < c.err {
				i := r.IntN(2)
				if off[i] == len(streams[i]) {
					i = 1 - i
				}
				n := min(1+r.IntN(300), len(streams[i])-off[i])
				o.Add(i, streams[i][off[i]:off[i]+n])
				off[i] += n
				if len(o.Bytes(0))+len(o.Bytes(1)) > limit {
					t.Fatalf("%+v seed %d: %d+%d bytes kept, over %d", c, seed, len(o.Bytes(0)), len(o.Bytes(1)), limit)
				}
			}
			for i := range 2 {
				got := o.Bytes(i)
				if len(got) != want[i] || !bytes.Equal(got, streams[i][:len(got)]) {
					t.Errorf("%+v seed %d: stream %d kept %d bytes (prefix %v), want %d", c, seed, i, len(got), bytes.Equal(got, streams[i][:min(len(got), len(streams[i]))]), want[i])
				}
			}
		}
	}
}
