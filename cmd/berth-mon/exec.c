/*
 * ExecSync served by berth-mon (docs/design.md, "ExecSync in berth-mon"):
 * the op exec-sync-stream of runtime/shim/execsync.go, spawned as the Go
 * shim spawns it (runtime/nsenter/spawn.c, through the files
 * process.ShareExec kept open for the container) and answered with the
 * same frames. An exec probe then costs no Go start and the pod stays
 * this monitor. Anything it does not take for sure (no "exec" line for
 * the container, a bad argument, a spawn that failed) promotes before the
 * command ran, and the Go shim answers exactly as always; a promotion
 * while commands run hands them over ("xexec" lines, resumeExecSync).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../runtime/nsenter/spawn.h"
#include "mon.h"

/* runtime/shim: the frames of an exec-sync-stream, and the Go shim's
 * bounds (cmd/berth-shim/execsync.go). */
#define FRAME_STDOUT 'o'
#define FRAME_STDERR 'e'
#define FRAME_RESULT 'z'
#define OUTPUT_CAP (16LL << 20)
#define DRAIN_GRACE_NS 1000000000LL
/* How long a frame may wait for berthd to read: past it berthd is taken
 * for gone, as a failed write is. */
#define SEND_WAIT_MS 10000
/* A plan bigger than this (an environment of over 250 KB) is the Go
 * shim's. */
#define PLAN_BUF (256 << 10)

struct xexec {
	int used;
	int conn; /* -1: berthd went away, only the reap is left */
	int pid; /* 0 once reaped */
	int pgid; /* the command's session and group: its pid */
	int status;
	int out[2]; /* read ends; -1 at their end */
	long long left[2], total[2];
	int timer;
	long long deadline; /* CLOCK_MONOTONIC ns; 0: no timeout */
	int timed_out;
};

static struct xexec xs[MAX_EXECS];
static int plans_fd = -1;
static int own_pidns = -1, dev_null = -1;
static unsigned long long ignored_signals;
static unsigned char plan[PLAN_BUF];
/* A frame's header and payload, read straight behind the header. */
static unsigned char frame[5 + 65536];

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cloexec(int fd)
{
	return fd < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 ? 0 : -1;
}

/* Reads an "exec" line's fields (after "exec") into c->x. Its files are
 * the Go shim's: close-on-exec again, so that a promotion closes them. */
int exec_load(struct ctr *c, char **f, int n)
{
	struct exec_files *x = &c->x;
	int i, k = 0, off, head, env;

	if (n < 7 || field_int(f[0], &x->pidns) || field_int(f[1], &x->cgroup_dir) || field_int(f[2], &x->seccomp) ||
	    field_int(f[3], &off) || field_int(f[4], &head) || field_int(f[5], &env) || field_int(f[6], &x->nns) || x->nns < 0 ||
	    x->nns > EXEC_MAX_NS || off < 0 || head < 0 || env < 0 || n < 8 + 2 * x->nns)
		return -1;
	x->plan_off = off;
	x->head_len = head;
	x->env_len = env;
	k = 7;
	for (i = 0; i < x->nns; i++, k += 2) {
		if (field_int(f[k], &x->ns_fd[i]) || field_int(f[k + 1], &x->ns_flag[i]))
			return -1;
	}
	if (field_int(f[k], &x->ntasks) || x->ntasks < 0 || x->ntasks > EXEC_MAX_TASKS || n != k + 1 + x->ntasks)
		return -1;
	for (i = 0; i < x->ntasks; i++) {
		if (field_int(f[k + 1 + i], &x->tasks[i]))
			return -1;
	}
	if (cloexec(x->pidns) || cloexec(x->cgroup_dir) || cloexec(x->seccomp))
		return -1;
	for (i = 0; i < x->nns; i++)
		if (cloexec(x->ns_fd[i]))
			return -1;
	for (i = 0; i < x->ntasks; i++)
		if (cloexec(x->tasks[i]))
			return -1;
	x->ok = x->pidns >= 0;
	return 0;
}

void exec_plans(int fd)
{
	plans_fd = fd;
	cloexec(fd);
}

/* Once, before the first spawn: what spawn.c needs of this process. */
static int exec_setup(void)
{
	static int done;
	int sig;

	if (done)
		return 0;
	/* The spawned process shares our memory until its execve: as in the
	 * Go shim (nsenter.SpawnExec), nobody without CAP_SYS_PTRACE over
	 * the node may read it. An execve made us dumpable again. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -1;
	own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	dev_null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (own_pidns < 0 || dev_null < 0)
		return -1;
	/* No handler of ours: CLONE_CLEAR_SIGHAND leaves the ignored ones,
	 * which the process resets. The raw call: libc's refuses its own
	 * two (32 and 33), which an ignoring parent passes down as well. */
	for (sig = 1; sig <= 64; sig++) {
		unsigned long ksa[4] = {0}; /* handler, flags, restorer, mask */
		if (syscall(SYS_rt_sigaction, sig, NULL, ksa, 8) == 0 && ksa[0] == (unsigned long)SIG_IGN)
			ignored_signals |= 1ULL << (sig - 1);
	}
	done = 1;
	return 0;
}

static int pread_full(int fd, unsigned char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t r = pread(fd, buf, len, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		buf += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/* The plan of the container's process with r's args, as
 * containerinit.ExecPlan encodes it; its length, or -1. */
static long build_plan(const struct exec_files *x, const struct request *r)
{
	size_t len = 12, i;

	memcpy(plan, "berthx01", 8);
	if (x->head_len + x->env_len + 16 > PLAN_BUF || pread_full(plans_fd, plan + len, (size_t)x->head_len, x->plan_off))
		return -1;
	len += (size_t)x->head_len;
	put32(plan + len, (uint32_t)r->nargs);
	len += 4;
	for (i = 0; i < (size_t)r->nargs; i++) {
		size_t n = strlen(r->args[i]) + 1;
		if (len + n + (size_t)x->env_len > PLAN_BUF)
			return -1;
		memcpy(plan + len, r->args[i], n);
		len += n;
	}
	if (pread_full(plans_fd, plan + len, (size_t)x->env_len, x->plan_off + x->head_len))
		return -1;
	len += (size_t)x->env_len;
	put32(plan + 8, (uint32_t)(len - 12));
	return (long)len;
}

/* Writes all of buf to berthd, waiting a bounded time for room. */
static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			int r = poll(&pf, 1, SEND_WAIT_MS);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void unwatch(int fd)
{
	if (fd >= 0)
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

static void close_out(struct xexec *x, int i)
{
	if (x->out[i] < 0)
		return;
	unwatch(x->out[i]);
	close(x->out[i]);
	x->out[i] = -1;
}

static void arm(struct xexec *x, long long at)
{
	struct itimerspec its = {0};
	long long d = at - now_ns();

	if (d < 1)
		d = 1; /* 0 would disarm */
	its.it_value.tv_sec = d / 1000000000LL;
	its.it_value.tv_nsec = d % 1000000000LL;
	timerfd_settime(x->timer, 0, &its, NULL);
}

static void release(struct xexec *x)
{
	close_out(x, 0);
	close_out(x, 1);
	if (x->conn >= 0) {
		unwatch(x->conn);
		close(x->conn);
		x->conn = -1;
	}
	if (x->pid == 0) {
		unwatch(x->timer);
		close(x->timer);
		x->used = 0;
	}
}

static void kill_command(struct xexec *x)
{
	kill(-x->pgid, SIGKILL);
	if (x->pid > 0)
		kill(x->pid, SIGKILL);
}

/* The command exited and its output ended (or the grace is over): the
 * result, as the Go shim's ExecSyncEnd. */
static void finish(struct xexec *x)
{
	char res[160];
	int code, n;

	if (x->conn < 0 || x->pid > 0)
		return;
	if (x->out[0] >= 0 || x->out[1] >= 0)
		return;
	code = WIFSIGNALED(x->status) ? 128 + WTERMSIG(x->status) : WEXITSTATUS(x->status);
	n = snprintf(res + 5, sizeof res - 5, "{\"exitCode\":%d%s,\"stdoutBytes\":%lld,\"stderrBytes\":%lld}", code,
		     x->timed_out ? ",\"timedOut\":true" : "", x->total[0], x->total[1]);
	res[0] = FRAME_RESULT;
	res[1] = (char)(n >> 24);
	res[2] = (char)(n >> 16);
	res[3] = (char)(n >> 8);
	res[4] = (char)n;
	send_all(x->conn, res, (size_t)n + 5);
	release(x);
}

/* Served: 0, the connection is the command's now; -1: the Go shim serves
 * it, nothing was started. */
int exec_start(struct conn *c, const struct request *r, struct ctr *t)
{
	struct berth_spawn sp;
	struct xexec *x = NULL;
	int outp[2][2] = {{-1, -1}, {-1, -1}}, i;
	long long start = now_ns();
	long len, pid;

	if (!t->running || !t->x.ok || plans_fd < 0 || !r->has_cmd || r->nargs == 0 || r->args[0][0] == '\0' ||
	    r->timeout < 0 || r->max_output < 0 || exec_setup() != 0)
		return -1;
	for (i = 0; i < MAX_EXECS && !x; i++) {
		if (!xs[i].used)
			x = &xs[i];
	}
	if (!x || (len = build_plan(&t->x, r)) < 0)
		return -1;
	memset(x, 0, sizeof *x);
	x->timer = -1;
	for (i = 0; i < 2; i++) {
		if (pipe2(outp[i], O_CLOEXEC) != 0 || fcntl(outp[i][0], F_SETFL, O_NONBLOCK) != 0)
			goto fail;
	}
	if ((x->timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
		goto fail;

	memset(&sp, 0, sizeof sp);
	for (i = 0; i < t->x.nns; i++) {
		sp.ns_fd[i] = t->x.ns_fd[i];
		sp.ns_flag[i] = t->x.ns_flag[i];
	}
	sp.nns = t->x.nns;
	for (i = 0; i < t->x.ntasks; i++)
		sp.cgroup_tasks[i] = t->x.tasks[i];
	sp.ncgroup = t->x.ntasks;
	sp.cgroup_dir = t->x.cgroup_dir;
	sp.seccomp_fd = t->x.seccomp;
	sp.stdio[0] = dev_null;
	sp.stdio[1] = outp[0][1];
	sp.stdio[2] = outp[1][1];
	sp.ignored = ignored_signals;
	/* Born in the container's PID namespace, as from the Go shim's
	 * locked thread (process.inPIDNSFile). */
	if (setns(t->x.pidns, CLONE_NEWPID) != 0)
		goto fail;
	pid = berth_spawn_exec(&sp, plan, (unsigned long)len);
	if (setns(own_pidns, CLONE_NEWPID) != 0) {
		/* Our later children (the Go shim's, after a promotion) would
		 * be born in the container: this pod's shim ends here. */
		warnx_("exec: back to our PID namespace: %s", strerror(errno));
		if (pid > 0)
			kill(pid, SIGKILL);
		_exit(1);
	}
	if (pid > 0 && sp.err[0]) {
		/* It failed before its execve and is gone: the Go shim does it
		 * again and answers with the error. */
		waitpid((pid_t)pid, NULL, 0);
		pid = -1;
	}
	if (pid <= 0)
		goto fail;
	close(outp[0][1]);
	close(outp[1][1]);
	x->used = 1;
	x->pid = x->pgid = (int)pid;
	x->out[0] = outp[0][0];
	x->out[1] = outp[1][0];
	x->left[0] = x->left[1] = r->max_output ? r->max_output : OUTPUT_CAP;
	x->conn = c->fd;
	/* The connection is the command's from here: its end is berthd
	 * giving up. */
	c->fd = -1;
	c->len = 0;
	unwatch(x->conn);
	i = (int)(x - xs);
	if (watch_fd(x->conn, EV_XCONN, i) || watch_fd(x->out[0], EV_XOUT, 2 * i) ||
	    watch_fd(x->out[1], EV_XOUT, 2 * i + 1) || watch_fd(x->timer, EV_XTIMER, i)) {
		kill_command(x);
		release(x);
		return 0;
	}
	if (r->timeout > 0) {
		x->deadline = start + r->timeout;
		arm(x, x->deadline);
	}
	if (send_all(x->conn, "{\"result\":{}}\n", 14) != 0) {
		kill_command(x);
		release(x);
	}
	return 0;
fail:
	for (i = 0; i < 2; i++) {
		if (outp[i][0] >= 0)
			close(outp[i][0]);
		if (outp[i][1] >= 0)
			close(outp[i][1]);
	}
	if (x->timer >= 0)
		close(x->timer);
	x->timer = -1;
	return -1;
}

static void on_output(struct xexec *x, int i)
{
	/* A few reads a turn: a command that writes without pause must not
	 * keep the loop from its timer, berthd's going and the logs. */
	for (int turn = 0; turn < 4; turn++) {
		ssize_t n = read(x->out[i], frame + 5, sizeof frame - 5);
		long long send_n;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close_out(x, i);
			finish(x);
			return;
		}
		/* The first bytes are sent, the rest read and dropped: the
		 * command never blocks on a full pipe. */
		x->total[i] += n;
		send_n = n < x->left[i] ? n : x->left[i];
		if (send_n > 0 && x->conn >= 0) {
			frame[0] = i == 0 ? FRAME_STDOUT : FRAME_STDERR;
			frame[1] = (unsigned char)(send_n >> 24);
			frame[2] = (unsigned char)(send_n >> 16);
			frame[3] = (unsigned char)(send_n >> 8);
			frame[4] = (unsigned char)send_n;
			if (send_all(x->conn, frame, (size_t)send_n + 5) != 0)
				x->left[0] = x->left[1] = 0;
			else
				x->left[i] -= send_n;
		}
	}
}

static void on_conn(struct xexec *x)
{
	char buf[256];
	ssize_t n = recv(x->conn, buf, sizeof buf, MSG_DONTWAIT);

	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return; /* berthd sends nothing more; what it does is dropped */
	/* berthd gave up (its caller did): the command ends. */
	kill_command(x);
	release(x);
}

static void on_timer(struct xexec *x)
{
	uint64_t ticks;

	if (read(x->timer, &ticks, sizeof ticks) != (ssize_t)sizeof ticks)
		return;
	if (x->pid == 0) {
		/* Reaped: a process the command left holds the pipes, and the
		 * grace is over. */
		close_out(x, 0);
		close_out(x, 1);
		finish(x);
		return;
	}
	x->timed_out = 1;
	kill_command(x);
}

void exec_event(unsigned kind, unsigned idx)
{
	struct xexec *x = &xs[(kind == EV_XOUT ? idx / 2 : idx) % MAX_EXECS];

	if (!x->used)
		return;
	switch (kind) {
	case EV_XOUT:
		if (x->out[idx % 2] >= 0)
			on_output(x, (int)(idx % 2));
		break;
	case EV_XCONN:
		if (x->conn >= 0)
			on_conn(x);
		break;
	case EV_XTIMER:
		on_timer(x);
		break;
	}
}

/* Reaps pid if it is a command of ours: 1 if it was. */
int exec_reaped(int pid, int status)
{
	int i;

	for (i = 0; i < MAX_EXECS; i++) {
		struct xexec *x = &xs[i];
		if (!x->used || x->pid != pid)
			continue;
		x->pid = 0;
		x->status = status;
		if (x->conn < 0) {
			release(x);
			return 1;
		}
		/* Its output is read for a while yet: a background process it
		 * started may hold the pipes. */
		arm(x, now_ns() + DRAIN_GRACE_NS);
		finish(x);
		return 1;
	}
	return 0;
}

/* A promotion: the commands berthd still waits for go to the Go shim,
 * their connections and pipes kept open across the execve. */
void exec_handover(void (*append)(const char *fmt, ...))
{
	int i;

	for (i = 0; i < MAX_EXECS; i++) {
		struct xexec *x = &xs[i];
		long long left = -1;
		if (!x->used || x->conn < 0)
			continue;
		if (fcntl(x->conn, F_SETFD, 0) != 0 || (x->out[0] >= 0 && fcntl(x->out[0], F_SETFD, 0) != 0) ||
		    (x->out[1] >= 0 && fcntl(x->out[1], F_SETFD, 0) != 0)) {
			kill_command(x);
			continue;
		}
		if (x->deadline && !x->timed_out && x->pid > 0) {
			left = x->deadline - now_ns();
			if (left < 0)
				left = 0;
		}
		append("xexec %d %d %d %d %lld %lld %lld %lld %d %lld %d\n", x->conn, x->pgid, x->out[0], x->out[1],
		       x->left[0], x->total[0], x->left[1], x->total[1], x->pid > 0 ? -1 : x->status, left, x->timed_out);
	}
}
