package filter

import (
	"testing"

	"github.com/berth-dev/berth/runtime/seccomp"
)

// Compiling runtime/default (x86_64 with x86 and x32): what an init pays
// without a compiled program.
func BenchmarkCompileRuntimeDefault(b *testing.B) {
	p, err := seccomp.RuntimeDefault(caps())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}

// A cached program handed over in a file and read back: what the shim and
// the init pay per container when the profile was compiled before.
func BenchmarkCachedProgramFile(b *testing.B) {
	p, err := seccomp.RuntimeDefault(caps())
	if err != nil {
		b.Fatal(err)
	}
	var c Cache
	if _, err := c.Program(p); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f, err := c.File(p)
		if err != nil {
			b.Fatal(err)
		}
		_, err = ReadProgram(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}
