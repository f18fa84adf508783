// Runs before the Go runtime starts (a constructor): a Go program is
// multi-threaded from its first instruction, and the kernel refuses to move a
// multi-threaded process into another mount or user namespace. So the process
// that must live in other namespaces is started with the wishes in its
// environment, and this code joins and creates them while it is still one
// thread.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <grp.h>
#include <unistd.h>

#define MAX_JOIN 8

struct ns_kind {
	const char *name;
	int flag;
};

// Joins happen in this order: the user namespace first (it grants the
// rights for the others), the mount namespace last (paths were opened before).
static const struct ns_kind kinds[] = {
	{"user", CLONE_NEWUSER}, {"ipc", CLONE_NEWIPC},       {"uts", CLONE_NEWUTS},
	{"net", CLONE_NEWNET},   {"pid", CLONE_NEWPID},       {"cgroup", CLONE_NEWCGROUP},
	{"mnt", CLONE_NEWNS},    {NULL, 0},
};

static int sync_fd = -1;

void berth_exec_plan(int sync_fd);

static void fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n >= (int)sizeof(msg))
		n = sizeof(msg) - 1;
	if (sync_fd >= 0)
		dprintf(sync_fd, "error nsenter: %s: %s\n", msg, strerror(errno));
	else
		fprintf(stderr, "nsenter: %s: %s\n", msg, strerror(errno));
	_exit(1);
}

static int kind_flag(const char *name, size_t len)
{
	for (const struct ns_kind *k = kinds; k->name; k++)
		if (strlen(k->name) == len && strncmp(k->name, name, len) == 0)
			return k->flag;
	return 0;
}

#define MAX_CGROUP 32

static int cgroup_fds[MAX_CGROUP], ncgroup = -1;

// open_cgroup_tasks opens the cgroup v1 "tasks" files that
// _BERTH_CGROUP_TASKS lists (one path a line), before any setns, so that
// the paths are resolved in the caller's mount namespace. A missing file is
// a hierarchy without this cgroup; one at least must exist.
static void open_cgroup_tasks(void)
{
	const char *tasks = getenv("_BERTH_CGROUP_TASKS");

	if (!tasks)
		return;
	ncgroup = 0;
	while (*tasks) {
		const char *end = strchr(tasks, '\n');
		char path[4096];
		size_t plen;
		int fd;

		if (!end)
			end = tasks + strlen(tasks);
		plen = end - tasks;
		if (plen >= sizeof(path) || ncgroup >= MAX_CGROUP)
			fail("_BERTH_CGROUP_TASKS too long");
		memcpy(path, tasks, plen);
		path[plen] = '\0';
		tasks = *end ? end + 1 : end;
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0)
			fail("open %s", path);
		cgroup_fds[ncgroup++] = fd;
	}
	if (ncgroup == 0) {
		errno = ENOENT;
		fail("join cgroup: no hierarchy has it");
	}
	unsetenv("_BERTH_CGROUP_TASKS");
}

// join_cgroup moves this process, still one thread, into the cgroup:
// writing "0" to "tasks" moves the calling thread without the kernel's
// global threadgroup lock, which a write of a pid to cgroup.procs by the
// creator takes, waiting for an RCU grace period (milliseconds, on every
// container start and exec).
static void join_cgroup(void)
{
	for (int i = 0; i < ncgroup; i++) {
		if (write(cgroup_fds[i], "0", 1) != 1)
			fail("join cgroup");
		close(cgroup_fds[i]);
	}
}

void berth_nsenter(void)
{
	const char *enabled = getenv("_BERTH_NSENTER");
	const char *fdstr, *join, *create;
	int fds[MAX_JOIN], flags[MAX_JOIN], njoin = 0, unshare_flags = 0, pid_ns = 0;

	if (!enabled || strcmp(enabled, "1") != 0)
		return;
	fdstr = getenv("_BERTH_SYNC_FD");
	if (fdstr)
		sync_fd = atoi(fdstr);

	// _BERTH_NS_JOIN: lines of "kind=/path"; opened all before any setns so
	// that every path is resolved in the caller's mount namespace.
	join = getenv("_BERTH_NS_JOIN");
	while (join && *join) {
		const char *eq = strchr(join, '='), *end = strchr(join, '\n');
		char path[4096];
		size_t plen;
		int flag;

		if (!end)
			end = join + strlen(join);
		if (!eq || eq > end)
			fail("bad _BERTH_NS_JOIN entry");
		flag = kind_flag(join, eq - join);
		if (!flag)
			fail("unknown namespace kind in _BERTH_NS_JOIN");
		plen = end - eq - 1;
		if (plen >= sizeof(path) || njoin >= MAX_JOIN)
			fail("_BERTH_NS_JOIN too long");
		memcpy(path, eq + 1, plen);
		path[plen] = '\0';
		fds[njoin] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[njoin] < 0)
			fail("open %s", path);
		flags[njoin++] = flag;
		join = *end ? end + 1 : end;
	}

	open_cgroup_tasks();

	// _BERTH_NS_NEW: comma-separated kinds to create.
	create = getenv("_BERTH_NS_NEW");
	while (create && *create) {
		const char *end = strchr(create, ',');
		int flag;

		if (!end)
			end = create + strlen(create);
		flag = kind_flag(create, end - create);
		if (!flag)
			fail("unknown namespace kind in _BERTH_NS_NEW");
		unshare_flags |= flag;
		create = *end ? end + 1 : end;
	}

	for (const struct ns_kind *k = kinds; k->name; k++)
		for (int i = 0; i < njoin; i++)
			if (flags[i] == k->flag) {
				if (setns(fds[i], k->flag) < 0)
					fail("join %s namespace", k->name);
				close(fds[i]);
				// Joining a user namespace keeps the node's root ids, which
				// it does not map: files made from here on would fail
				// (EOVERFLOW). Become its root, which keeps every
				// capability in it.
				if (k->flag == CLONE_NEWUSER &&
				    (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
					fail("become root of the user namespace");
				if (k->flag == CLONE_NEWPID)
					pid_ns = 1;
			}
	if (unshare_flags && unshare(unshare_flags) < 0)
		fail("unshare 0x%x", unshare_flags);
	if (unshare_flags & CLONE_NEWPID)
		pid_ns = 1;

	unsetenv("_BERTH_NSENTER");
	unsetenv("_BERTH_NS_JOIN");
	unsetenv("_BERTH_NS_NEW");

	// After the namespaces (a new cgroup namespace stays rooted where the
	// creator is, as when the creator moved us), before the fork into the
	// PID namespace: the child is born in the cgroup, and a failure is
	// reported before any pid.
	join_cgroup();

	if (pid_ns) {
		// Only children enter a PID namespace. CLONE_PARENT makes the child
		// a child of our caller, which reaps and signals it directly; this
		// process only reports the child's pid and leaves.
		// The child waits at a gate until the pid is reported: both write
		// to the same sync socket, and the creator needs "pid" before the
		// child's "ready" (or its error).
		int gate[2];
		if (pipe2(gate, O_CLOEXEC) < 0)
			fail("gate pipe");
		pid_t pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (pid < 0)
			fail("clone into the PID namespace");
		if (pid > 0) {
			if (sync_fd >= 0)
				dprintf(sync_fd, "pid %d\n", pid);
			_exit(0); // closes the gate's write end: the child goes on
		}
		close(gate[1]);
		char c;
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		close(gate[0]);
	}

	// An exec whose creator sent a plan finishes here (execplan.c).
	const char *plan = getenv("_BERTH_EXEC_PLAN");
	if (plan && strcmp(plan, "1") == 0)
		berth_exec_plan(sync_fd);
}
