package seccomp

import "testing"

// RuntimeDefault runs for every confined CreateContainer in berthd.
func BenchmarkRuntimeDefault(b *testing.B) {
	c := capSet()
	for b.Loop() {
		if _, err := RuntimeDefault(c); err != nil {
			b.Fatal(err)
		}
	}
}
