// Command berth-shim is the per-pod monitor: the parent and reaper of the
// pod's containers. It is kept small (no gRPC, no Kubernetes libraries) so a
// node with many pods pays little for it.
//
// One binary, several roles, chosen by the first argument:
//
//	berth-shim serve ...  the pod's monitor (started detached by berthd)
//	berth-shim pause      PID 1 of a pod's shared PID namespace
//	berth-shim init       a container's init, before execve of the user's command
package main

import (
	"fmt"
	"os"
)

// roles maps a first argument to its entry point; each role registers itself
// from its own file.
var roles = map[string]func(args []string) int{}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: berth-shim serve|pause|init [flags]")
		os.Exit(2)
	}
	run, ok := roles[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "berth-shim: unknown role %q\n", os.Args[1])
		os.Exit(2)
	}
	os.Exit(run(os.Args[2:]))
}
