//go:build cgo

package main

// The pause process is PID 1 of a pod's PID namespace for the pod's whole
// life: one per pod. Done in C before the Go runtime starts, it costs a
// fraction of the memory of a Go process (no heap arenas, no runtime
// threads). pauseMain in pause.go is the same in Go, for builds without cgo.
//
// The hold role is what a pod's user namespace is made with: berthd starts
// it in new namespaces, pins them, and kills it.

/*
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534

static void report(const char *msg) {
	// fd 3 tells the shim whether we are ready; absent when run by hand.
	if (write(3, msg, strlen(msg)) < 0) {
	}
	close(3);
}

// drop_caps empties every capability set: for a user namespace whose
// mapping leaves nobody out, where root cannot leave its uid.
static int drop_caps(void) {
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	return syscall(SYS_capset, &h, d);
}

// After nsenter's constructor (priority 101): in the pod's namespaces.
__attribute__((constructor(102))) static void berth_pause(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc >= 2 && strcmp(argv[1], "hold") == 0) {
		for (;;)
			pause();
	}
	if (argc < 2 || strcmp(argv[1], "pause") != 0 || getpid() != 1)
		return; // not the pause role: Go's main (or pauseMain's error) runs
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	char err[128];
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(err, sizeof err, "no_new_privs: %s", strerror(errno));
		report(err);
		_exit(1);
	}
	if (geteuid() == 0) {
		int dropped = setgroups(0, NULL) == 0 && setresgid(NOBODY, NOBODY, NOBODY) == 0 && setresuid(NOBODY, NOBODY, NOBODY) == 0;
		if (!dropped && errno == EINVAL)
			dropped = drop_caps() == 0; // nobody is not mapped
		if (!dropped) {
			snprintf(err, sizeof err, "drop to nobody: %s", strerror(errno));
			report(err);
			_exit(1);
		}
	}
	report("ok");
	// Nothing else it inherited stays open (nsenter's report pipe).
	syscall(SYS_close_range, 3, ~0U, 0);
	for (;;) {
		int sig = sigwaitinfo(&all, NULL);
		if (sig == SIGTERM || sig == SIGINT)
			_exit(0);
		if (sig == SIGCHLD)
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
	}
}
*/
import "C"
