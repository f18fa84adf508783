package main

import (
	"os"

	"github.com/berth-dev/berth/runtime/containerinit"
	// Its C constructor moves "init" into the container's namespaces
	// before the Go runtime starts.
	_ "github.com/berth-dev/berth/runtime/nsenter"
)

func init() {
	roles["init"] = containerinit.Main
	if len(os.Args) > 1 && os.Args[1] == "init" {
		containerinit.LockThread()
	}
}
