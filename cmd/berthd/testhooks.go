package main

import (
	"flag"
	"strings"
)

// testHooksFlag names the hooks the integration tests use to stand in for
// a crash: work berthd does in the background after a call returned is
// held, as if berthd had died right then. The flag is hidden from the
// usage and is for tests only; nothing else (no environment variable, no
// config key) turns a hook on, so what a node's environment happens to
// hold never changes a production berthd.
const testHooksFlag = "test-hooks"

// testHooks are the hooks --test-hooks turned on.
type testHooks struct {
	// holdCleanup: removed containers' files are not cleaned up in the
	// background (a pod removal still cleans its containers up).
	holdCleanup bool
	// holdNetRelease: stopped pods' networks are not released.
	holdNetRelease bool
}

// parseTestHooks reads --test-hooks: hook names, comma-separated.
func parseTestHooks(s string) (testHooks, error) {
	var h testHooks
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "hold-cleanup":
			h.holdCleanup = true
		case "hold-net-release":
			h.holdNetRelease = true
		default:
			return h, configErrorf("--%s: unknown hook %q (hold-cleanup, hold-net-release)", testHooksFlag, name)
		}
	}
	return h, nil
}

// printUsageDefaults is fs.PrintDefaults without the hidden test flag.
func printUsageDefaults(fs *flag.FlagSet) {
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shown.SetOutput(fs.Output())
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == testHooksFlag {
			return
		}
		shown.Var(f.Value, f.Name, f.Usage)
		// The default as registered, not the value parsed so far.
		shown.Lookup(f.Name).DefValue = f.DefValue
	})
	shown.PrintDefaults()
}
