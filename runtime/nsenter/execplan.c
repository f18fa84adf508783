// The exec path without a Go runtime: after berth_nsenter put the process
// into the container's namespaces and cgroup, an exec whose creator sent an
// exec plan (containerinit.ExecPlan) is finished here, in C, and the Go
// runtime of berth-shim never starts. Starting it costs about 300 page
// faults, most of an ExecSync's time on a small node. The plan carries what
// containerinit's finish applies to an exec without a terminal, already
// resolved by the shim (capability masks, rlimit numbers), and this code
// applies it in the same order: seccomp (before the drop when the process
// gets no no_new_privs), rlimits, OOM score, bounding set, user and groups,
// capabilities, no_new_privs, working directory, the command's lookup as the
// container's user, seccomp (with no_new_privs), "ready", "start", execve.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#include "execplan.h"

#define SECCOMP_MAX (1 << 24)

enum {
	PLAN_UMASK = 1,
	PLAN_NNP = 2,
	PLAN_OOM = 4,
	PLAN_SECCOMP = 8,
};

static int plan_fd = -1;

// A spawned exec (spawn.c) runs this code in a process that shares the
// shim's memory: its failures are written to spawn_err, and a failure while
// the shim itself parses the plan returns there through plan_jmp instead of
// ending the shim.
char *spawn_err;
size_t spawn_err_len;
int spawn_errno;
jmp_buf *plan_jmp;

// plan_fail reports why the exec cannot happen, as the Go init does
// ("error <message>"), and exits.
void plan_fail(int err, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	if (spawn_err) {
		// strerror(3) may take locale locks another thread holds: the
		// shim adds it.
		snprintf(spawn_err, spawn_err_len, "%s", msg);
		spawn_errno = err;
		if (plan_jmp)
			longjmp(*plan_jmp, 1);
		_exit(1);
	}
	if (err)
		dprintf(plan_fd, "error %s: %s\n", msg, strerror(err));
	else
		dprintf(plan_fd, "error %s\n", msg);
	_exit(1);
}

static void read_full(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			plan_fail(r < 0 ? errno : 0, "exec: read plan");
		p += r;
		n -= r;
	}
}

struct cursor {
	const unsigned char *p, *end;
};

static uint32_t get32(struct cursor *c)
{
	uint32_t v = 0;

	if (c->end - c->p < 4)
		plan_fail(0, "exec: short plan");
	for (int i = 3; i >= 0; i--)
		v = v << 8 | c->p[i];
	c->p += 4;
	return v;
}

static uint64_t get64(struct cursor *c)
{
	uint64_t lo = get32(c);

	return (uint64_t)get32(c) << 32 | lo;
}

// getstr returns a NUL-terminated string of the plan (the shim refuses
// strings holding a NUL).
static const char *getstr(struct cursor *c)
{
	const char *s = (const char *)c->p;
	const unsigned char *nul = memchr(c->p, 0, c->end - c->p);

	if (!nul)
		plan_fail(0, "exec: unterminated string in plan");
	c->p = nul + 1;
	return s;
}

// getstrs reads a count and that many strings into a NULL-terminated array.
static char **getstrs(struct cursor *c)
{
	uint32_t n = get32(c);
	char **v;

	if (n > (uint32_t)(c->end - c->p))
		plan_fail(0, "exec: bad string count in plan");
	v = calloc(n + 1, sizeof(char *));
	if (!v)
		plan_fail(errno, "exec: plan");
	for (uint32_t i = 0; i < n; i++)
		v[i] = (char *)getstr(c);
	return v;
}

static struct sock_fprog seccomp_prog;
static unsigned int seccomp_flags;

// read_seccomp reads the compiled program (filter.Program's encoding:
// "berthbp1", flags, count, instructions, little-endian) from fd.
static void read_seccomp(int fd)
{
	unsigned char *buf;
	struct cursor c;
	struct stat st;
	uint32_t n;

	if (fstat(fd, &st) < 0)
		plan_fail(errno, "seccomp: read program");
	if (st.st_size < 16 || st.st_size > SECCOMP_MAX)
		plan_fail(0, "seccomp: program of %lld bytes", (long long)st.st_size);
	buf = malloc(st.st_size);
	if (!buf)
		plan_fail(errno, "seccomp: read program");
	for (off_t off = 0; off < st.st_size;) {
		ssize_t r = pread(fd, buf + off, st.st_size - off, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			plan_fail(r < 0 ? errno : 0, "seccomp: read program");
		off += r;
	}
	if (memcmp(buf, "berthbp1", 8) != 0)
		plan_fail(0, "seccomp: not an encoded filter program");
	c.p = buf + 8;
	c.end = buf + st.st_size;
	seccomp_flags = get32(&c);
	n = get32(&c);
	if (n == 0 || n > 0xffff || (size_t)(c.end - c.p) != (size_t)n * 8)
		plan_fail(0, "seccomp: encoded program of %u instructions has %ld bytes", n, (long)(c.end - c.p));
	seccomp_prog.len = n;
	seccomp_prog.filter = calloc(n, sizeof(struct sock_filter));
	if (!seccomp_prog.filter)
		plan_fail(errno, "seccomp: read program");
	for (uint32_t i = 0; i < n; i++) {
		const unsigned char *in = c.p + 8 * i;
		struct sock_filter *f = &seccomp_prog.filter[i];
		f->code = in[0] | in[1] << 8;
		f->jt = in[2];
		f->jf = in[3];
		f->k = (uint32_t)in[4] | (uint32_t)in[5] << 8 | (uint32_t)in[6] << 16 | (uint32_t)in[7] << 24;
	}
	free(buf);
}

static void load_seccomp(void)
{
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, seccomp_flags, &seccomp_prog);

	if (r < 0)
		plan_fail(errno, "seccomp: load seccomp filter");
	if (r > 0)
		plan_fail(0, "seccomp: load seccomp filter: thread %ld cannot be synchronised", r);
}

static int last_cap(void)
{
	char buf[16] = {0};
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		plan_fail(errno, "capabilities: read cap_last_cap");
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		plan_fail(n < 0 ? errno : 0, "capabilities: read cap_last_cap");
	return atoi(buf);
}

// apply_caps sets the effective, permitted and inheritable sets and the
// ambient set, as moby/sys/capability's Apply(CAPS|AMBS).
static void apply_caps(uint64_t eff, uint64_t prm, uint64_t inh, uint64_t amb, int last)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2] = {
		{.effective = (uint32_t)eff, .permitted = (uint32_t)prm, .inheritable = (uint32_t)inh},
		{.effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(prm >> 32), .inheritable = (uint32_t)(inh >> 32)},
	};

	if (syscall(SYS_capset, &hdr, data) < 0)
		plan_fail(errno, "capabilities");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		plan_fail(errno, "capabilities");
	for (int i = 0; i <= last && i < 64; i++)
		if (amb & (1ULL << i) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0) < 0 && errno != EINVAL)
			plan_fail(errno, "capabilities");
}

// drop_bounds leaves in the bounding set only what bnd holds, as
// Apply(BOUNDS): only a holder of CAP_SETPCAP can drop.
static void drop_bounds(uint64_t bnd, int last)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct cur[2];

	if (syscall(SYS_capget, &hdr, cur) < 0)
		plan_fail(errno, "bounding capabilities");
	if (!(cur[0].effective & (1U << CAP_SETPCAP)))
		return;
	for (int i = 0; i <= last; i++)
		if ((i >= 64 || !(bnd & (1ULL << i))) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0 && errno != EINVAL)
			plan_fail(errno, "bounding capabilities");
}

// check_exec is lookPath's check: the file exists, is no directory and is
// executable for the process's (the container user's) ids.
static int check_exec(const char *p)
{
	struct stat st;

	if (stat(p, &st) < 0)
		return errno;
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (access(p, X_OK) < 0)
		return errno;
	return 0;
}

static const char *look_path(const char *file, char **env)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	static char full[4096];

	if (strchr(file, '/')) {
		int err = check_exec(file);
		if (err)
			plan_fail(err, "exec %s", file);
		return file;
	}
	for (char **e = env; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	for (const char *dir = path;;) {
		const char *end = strchrnul(dir, ':');
		int len = end - dir;

		if (len == 0)
			snprintf(full, sizeof(full), "%s", file);
		else
			snprintf(full, sizeof(full), "%.*s/%s", len, dir, file);
		if (strlen(full) < sizeof(full) - 1 && check_exec(full) == 0)
			return full;
		if (!*end)
			break;
		dir = end + 1;
	}
	plan_fail(0, "exec %s: executable file not found in $PATH", file);
	return NULL;
}

// plan_reset_handlers makes the handling of the signals in mask (bit
// sig-1; PLAN_ALL_SIGNALS: every one) the default.
//
// The raw system calls, not sigaction(3): glibc refuses its own two
// real-time signals (32 and 33) with EINVAL, so an ignored 32 inherited
// from berthd's environment would have reached the command. The kernel's
// struct starts with the handler; SIG_DFL is all zeroes; 8 is the size of
// the kernel's sigset_t (64 signals).
void plan_reset_handlers(uint64_t mask)
{
	for (int sig = 1; sig < NSIG && sig <= 64; sig++) {
		unsigned long dfl[4] = {0};
		if (sig != SIGKILL && sig != SIGSTOP && (mask & (1ULL << (sig - 1))))
			syscall(SYS_rt_sigaction, sig, dfl, NULL, 8);
	}
}

// reset_signals gives the command default signal handling and an empty
// mask (containerinit.resetSignals).
static void reset_signals(struct exec_plan *p)
{
	sigset_t none;

	// Every handler, not only the ignored ones: a spawned exec runs with
	// the shim's handlers until it resets them (its first step).
	if (!p->handlers_default)
		plan_reset_handlers(PLAN_ALL_SIGNALS);
	sigemptyset(&none);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
}

static void close_extra_fds(void)
{
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	// Kernels before 5.11.
	for (int fd = 3; fd < 65536; fd++)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// plan_parse reads a plan's body (after "berthx01" and its length).
void plan_parse(unsigned char *body, uint32_t len, struct exec_plan *p)
{
	struct cursor c = {.p = body, .end = body + len};

	p->bnd = get64(&c);
	p->eff = get64(&c);
	p->prm = get64(&c);
	p->inh = get64(&c);
	p->amb = get64(&c);
	p->uid = get32(&c);
	p->gid = get32(&c);
	p->flags = get32(&c);
	p->umask = get32(&c);
	p->oom = (int32_t)get32(&c);
	p->ngroups = get32(&c);
	if (p->ngroups > 65536)
		plan_fail(0, "exec: %u groups", p->ngroups);
	p->groups = calloc(p->ngroups + 1, sizeof(gid_t));
	if (!p->groups)
		plan_fail(errno, "exec: plan");
	for (uint32_t i = 0; i < p->ngroups; i++)
		p->groups[i] = get32(&c);
	p->nrlimits = get32(&c);
	if (p->nrlimits > PLAN_RLIMITS)
		plan_fail(0, "exec: %u rlimits", p->nrlimits);
	for (uint32_t i = 0; i < p->nrlimits; i++) {
		p->rl[i].res = get32(&c);
		p->rl[i].lim.rlim_cur = get64(&c);
		p->rl[i].lim.rlim_max = get64(&c);
	}
	p->cwd = getstr(&c);
	p->args = getstrs(&c);
	p->env = getstrs(&c);
	if (c.p != c.end || !p->args[0])
		plan_fail(0, "exec: malformed plan");
	if (p->flags & PLAN_SECCOMP) {
		if (p->seccomp_fd < 3)
			plan_fail(0, "seccomp: no compiled program handed down");
		read_seccomp(p->seccomp_fd);
	}
}

// plan_free frees what plan_parse allocated (the strings point into the
// body, which stays the caller's).
void plan_free(struct exec_plan *p)
{
	free(p->groups);
	free(p->args);
	free(p->env);
	free(seccomp_prog.filter);
	p->groups = NULL;
	p->args = p->env = NULL;
	seccomp_prog.filter = NULL;
}

// plan_apply makes this process what the plan says, up to its execve, and
// returns the command's path. Only system calls: in a spawned exec it runs
// in memory it shares with the shim, whose other threads may hold libc's
// locks.
const char *plan_apply(struct exec_plan *p)
{
	const char *path, *cwd = p->cwd;
	int last;

	// runExec: a session of its own, at the root of the container.
	if (setsid() < 0)
		plan_fail(errno, "setsid");
	if (chdir("/") < 0)
		plan_fail(errno, "chdir /");

	if ((p->flags & PLAN_SECCOMP) && !(p->flags & PLAN_NNP))
		load_seccomp();
	for (uint32_t i = 0; i < p->nrlimits; i++)
		if (prlimit(0, p->rl[i].res, &p->rl[i].lim, NULL) < 0)
			plan_fail(errno, "rlimit %u", p->rl[i].res);
	if (p->flags & PLAN_OOM) {
		char v[16];
		int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
		int n = snprintf(v, sizeof(v), "%d", p->oom);
		// Lowering the score needs CAP_SYS_RESOURCE over the whole
		// machine, which a nested node may lack. A spawned exec's score
		// is its own (the kernel does not pass a vfork child's on to
		// the memory's other users).
		if ((fd < 0 || write(fd, v, n) != n) && errno != EPERM && errno != EACCES)
			plan_fail(errno, "oom_score_adj");
		if (fd >= 0)
			close(fd);
	}
	last = last_cap();
	drop_bounds(p->bnd, last);
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		plan_fail(errno, "keep capabilities");
	if (p->flags & PLAN_UMASK)
		umask(p->umask);
	// Raw system calls: the thread's credentials, as the Go init sets them
	// (libc's wrappers would signal every thread they believe shares them).
	if (syscall(SYS_setgroups, p->ngroups, p->groups) < 0)
		plan_fail(errno, "setgroups");
	if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
		plan_fail(errno, "setgid %u", p->gid);
	if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
		plan_fail(errno, "setuid %u", p->uid);
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		plan_fail(errno, "keep capabilities");
	apply_caps(p->eff, p->prm, p->inh, p->amb, last);
	if ((p->flags & PLAN_NNP) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		plan_fail(errno, "no_new_privs");
	if (!*cwd)
		cwd = "/";
	if (chdir(cwd) < 0)
		plan_fail(errno, "chdir %s", cwd);
	path = look_path(p->args[0], p->env);
	if ((p->flags & PLAN_SECCOMP) && (p->flags & PLAN_NNP))
		load_seccomp();
	return path;
}

// plan_exec gives the command default signal handling and only fds 0-2,
// and executes it.
void plan_exec(const char *path, struct exec_plan *p)
{
	reset_signals(p);
	close_extra_fds();
	execve(path, p->args, p->env);
	plan_fail(errno, "exec %s", p->args[0]);
}

void berth_exec_plan(int sync_fd)
{
	unsigned char head[12];
	unsigned char *body;
	struct exec_plan p = {.seccomp_fd = -1};
	const char *path, *s;
	char line[16];
	size_t got = 0;
	uint32_t len;

	plan_fd = sync_fd;
	if (sync_fd < 0)
		_exit(2);
	fcntl(sync_fd, F_SETFD, FD_CLOEXEC);

	read_full(sync_fd, head, sizeof(head));
	if (memcmp(head, "berthx01", 8) != 0)
		plan_fail(0, "exec: not an exec plan");
	len = head[8] | head[9] << 8 | head[10] << 16 | (uint32_t)head[11] << 24;
	if (len > PLAN_MAX)
		plan_fail(0, "exec: plan of %u bytes", len);
	body = malloc(len + 1);
	if (!body)
		plan_fail(errno, "exec: plan");
	read_full(sync_fd, body, len);
	if ((s = getenv("_BERTH_SECCOMP_FD")) != NULL) {
		p.seccomp_fd = atoi(s);
		if (p.seccomp_fd < 3)
			plan_fail(0, "seccomp: bad _BERTH_SECCOMP_FD %s", s);
	}
	plan_parse(body, len, &p);
	// The command must not inherit it.
	if (p.seccomp_fd >= 0)
		close(p.seccomp_fd);
	path = plan_apply(&p);

	if (dprintf(sync_fd, "ready\n") < 0)
		plan_fail(errno, "report ready");
	// "start\n", read a byte at a time: nothing past it is ours.
	while (got < sizeof(line) - 1) {
		ssize_t r = read(sync_fd, line + got, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(1); // the creator went away: nothing must run
		if (line[got++] == '\n')
			break;
	}
	line[got] = '\0';
	if (strcmp(line, "start\n") != 0)
		plan_fail(0, "unexpected message %s", line);
	plan_exec(path, &p);
}
