// Package nsenter moves a starting process into namespaces before the Go
// runtime starts (see nsenter.c). Importing it (for side effects) is enough;
// the work happens only when the process was started with Env's variables.
package nsenter

/*
#cgo CFLAGS: -Wall -Werror -std=gnu11
void berth_nsenter(void);
// Priority 101 (the first one not reserved): before every other
// constructor of the binary, so that the pause role's (cmd/berth-shim) runs
// in the namespaces.
static void __attribute__((constructor(101))) berth_nsenter_init(void) { berth_nsenter(); }
*/
import "C"
