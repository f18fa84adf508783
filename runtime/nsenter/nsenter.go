// Package nsenter moves a starting process into namespaces before the Go
// runtime starts (see nsenter.c). Importing it (for side effects) is enough;
// the work happens only when the process was started with Env's variables.
package nsenter

/*
#cgo CFLAGS: -Wall -Werror -std=gnu11
void berth_nsenter(void);
static void __attribute__((constructor)) berth_nsenter_init(void) { berth_nsenter(); }
*/
import "C"
