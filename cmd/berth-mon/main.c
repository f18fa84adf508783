/*
 * berth-mon's loop: state from the Go shim, epoll over a signalfd, the
 * control socket, the clients and the containers' output; promote() execs
 * the Go shim back, in this same process, with the state and the clients.
 * See mon.h and cmd/berth-shim/demote.go.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mon.h"

static struct {
	char pod_id[ID_BUF];
	char state_dir[PATH_BUF];
	char started[64];
	int pause_pid, listen_fd, exe_fd, state_fd;
	int nctr;
	int sig_fd;
	int term; /* a SIGTERM or SIGINT came: the Go shim shuts down */
} g = {.state_fd = -1, .exe_fd = -1};
int epoll_fd = -1;

static struct ctr ctrs[MAX_CTRS];
static struct stream streams[2 * MAX_CTRS];
static struct conn conns[MAX_CONNS];
/* The blob as the Go shim wrote it (cmd/berth-shim/monstate.go). */
static char blob[MAX_CTRS * 2048 + 8192];

void warnx_(const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dprintf(2, "berth-mon %s: %s\n", g.pod_id, msg);
}

/* Decodes a field escaped by monstate.go's esc into out. */
static int unesc(const char *f, char *out, size_t cap)
{
	size_t n = 0;

	if (strcmp(f, "-") == 0) {
		out[0] = '\0';
		return 0;
	}
	for (; *f; f++) {
		char c = *f;
		if (c == '%') {
			unsigned v;
			if (sscanf(f + 1, "%2x", &v) != 1 || !f[1] || !f[2])
				return -1;
			c = (char)v;
			f += 2;
		}
		if (n + 1 >= cap)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

int field_int(const char *f, int *v)
{
	char *e;
	long x = strtol(f, &e, 10);
	if (*e || e == f || x < -1 || x > 1 << 30)
		return -1;
	*v = (int)x;
	return 0;
}

/* Splits line into at most max space-separated fields, in place. */
static int fields(char *line, char **f, int max)
{
	int n = 0;
	char *save = NULL, *t;
	for (t = strtok_r(line, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save))
		f[n++] = t;
	return n;
}

static int add_ctr(char **f, int n)
{
	struct ctr *c;
	int out, err, in, tty, i;

	if (n != 12 || g.nctr >= MAX_CTRS)
		return -1;
	c = &ctrs[g.nctr];
	if (unesc(f[0], c->id, sizeof c->id) || field_int(f[1], &c->pid) || field_int(f[2], &tty) ||
	    field_int(f[3], &out) || field_int(f[4], &err) || field_int(f[5], &in) ||
	    field_int(f[6], &c->log_fd) || unesc(f[7], c->log_dir, sizeof c->log_dir) ||
	    unesc(f[8], c->log_name, sizeof c->log_name))
		return -1;
	/* An exited container has no descriptors left, only its state. */
	c->running = out >= 0;
	(void)in; /* stdin stays open for the Go shim's attach; unused here */
	(void)tty; /* a terminal is one stream, "stdout", as in the Go shim */
	for (i = 0; i < 2; i++) {
		struct stream *s = &streams[2 * g.nctr + i];
		s->fd = i == 0 ? out : err;
		s->name = i == 0 ? "stdout" : "stderr";
		s->ctr = g.nctr;
	}
	g.nctr++;
	return 0;
}

static int load_state(void)
{
	size_t len = 0;
	char *line, *next;
	/* Parsed in a copy: blob stays as written, to be handed back. */
	static char copy[sizeof blob];
	char *f[80];
	int n, have_pod = 0;

	for (;;) {
		ssize_t r = pread(g.state_fd, blob + len, sizeof blob - 1 - len, (off_t)len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == sizeof blob - 1)
			return -1;
	}
	blob[len] = '\0';
	memcpy(copy, blob, len + 1);
	line = copy;
	next = strchr(line, '\n');
	if (!next || strncmp(line, "berth-mon 2\n", 12) != 0)
		return -1;
	for (line = next + 1; *line; line = next) {
		next = strchr(line, '\n');
		if (!next)
			return -1;
		*next++ = '\0';
		if (strncmp(line, "state ", 6) == 0) {
			if (g.nctr == 0 || strlen(line + 6) >= STATE_JSON)
				return -1;
			strcpy(ctrs[g.nctr - 1].state_json, line + 6);
			continue;
		}
		n = fields(line, f, 80);
		if (n == 8 && strcmp(f[0], "pod") == 0) {
			if (unesc(f[1], g.pod_id, sizeof g.pod_id) || unesc(f[2], g.state_dir, sizeof g.state_dir) ||
			    unesc(f[3], g.started, sizeof g.started) || field_int(f[4], &g.pause_pid) ||
			    field_int(f[5], &g.listen_fd) || field_int(f[6], &g.exe_fd))
				return -1;
			have_pod = 1;
		} else if (n > 0 && strcmp(f[0], "ctr") == 0) {
			if (add_ctr(f + 1, n - 1) != 0)
				return -1;
		} else if (n > 0 && strcmp(f[0], "exec") == 0) {
			if (g.nctr == 0 || exec_load(&ctrs[g.nctr - 1], f + 1, n - 1) != 0)
				return -1;
		} else if (n == 2 && strcmp(f[0], "plans") == 0) {
			int fd;
			if (field_int(f[1], &fd) || fd < 3)
				return -1;
			exec_plans(fd);
		} else {
			return -1;
		}
	}
	return have_pod ? 0 : -1;
}

static void append_state(const char *fmt, ...)
{
	va_list ap;
	char line[2 * CONN_BUF + 64];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line || lseek(g.state_fd, 0, SEEK_END) < 0 ||
	    write(g.state_fd, line, (size_t)n) != n)
		warnx_("append to state failed");
}

/* Execs the Go shim back. Never returns: a monitor that cannot hand over
 * an op cannot serve its pod, and its going is what berthd notices. */
static void promote(const char *why)
{
	static const char hexd[] = "0123456789abcdef";
	static char hex[2 * CONN_BUF + 1];
	char fd_arg[16];
	sigset_t none;
	int i;
	size_t k;

	for (i = 0; i < 2 * g.nctr; i++) {
		if (streams[i].fd >= 0)
			log_stream_flush(&streams[i], ctrs[streams[i].ctr].log_fd);
	}
	exec_handover(append_state);
	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &conns[i];
		if (c->fd < 0)
			continue;
		if (fcntl(c->fd, F_SETFD, 0) != 0) {
			close(c->fd);
			continue;
		}
		for (k = 0; k < c->len; k++) {
			hex[2 * k] = hexd[(unsigned char)c->buf[k] >> 4];
			hex[2 * k + 1] = hexd[(unsigned char)c->buf[k] & 15];
		}
		hex[2 * c->len] = '\0';
		append_state("conn %d %s\n", c->fd, c->len ? hex : "-");
	}
	if (g.term)
		append_state("signal 15\n");
	snprintf(fd_arg, sizeof fd_arg, "%d", g.state_fd);
	char *argv[] = {"berth-shim", "resume", "--state-fd", fd_arg, "--id", g.pod_id, "--state-dir", g.state_dir, NULL};
	/* The Go shim's children inherit its initial signal mask: nothing may
	 * stay blocked. A SIGCHLD pending now is lost, which is why the Go
	 * shim reaps once at resume. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	fexecve(g.exe_fd, argv, environ);
	warnx_("promote (%s): exec berth-shim: %s", why, strerror(errno));
	_exit(1);
}

int watch_fd(int fd, int kind, int idx)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((unsigned long long)kind << 32) | (unsigned)idx};
	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		warnx_("epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void watch(int fd, int kind, int idx)
{
	if (watch_fd(fd, kind, idx) != 0)
		promote("epoll");
}

static void reply(struct conn *c, const char *fmt, ...)
{
	char out[STATE_JSON + ID_BUF + 256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, sizeof out, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof out)
		return;
	/* One short answer on a connection berthd reads at once: a client
	 * that does not read it loses it, as with any gone client. */
	if (send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		close(c->fd);
		c->fd = -1;
	}
}

static struct ctr *find(const char *id)
{
	int i;
	for (i = 0; i < g.nctr; i++) {
		if (strcmp(ctrs[i].id, id) == 0)
			return &ctrs[i];
	}
	return NULL;
}

/* Serves one request line; 0 if served, -1 to promote. */
static int serve(struct conn *c, const char *line, size_t len)
{
	struct request r;
	struct ctr *t;

	if (parse_request(line, len, &r) != 0)
		return -1;
	if (strcmp(r.op, "ping") == 0) {
		reply(c, "{\"result\":{}}\n");
		return 0;
	}
	if (strcmp(r.op, "status") == 0) {
		if (json_plain(g.pod_id) != 0 || json_plain(g.started) != 0)
			return -1;
		if (g.pause_pid)
			reply(c, "{\"result\":{\"podId\":\"%s\",\"pid\":%d,\"pausePid\":%d,\"started\":\"%s\"}}\n",
			      g.pod_id, getpid(), g.pause_pid, g.started);
		else
			reply(c, "{\"result\":{\"podId\":\"%s\",\"pid\":%d,\"started\":\"%s\"}}\n", g.pod_id, getpid(), g.started);
		return 0;
	}
	/* The container ops: an unknown id, a bad argument, anything not
	 * plain goes to the Go shim, which has the exact error. */
	if (!r.has_id || !(t = find(r.id)))
		return -1;
	if (strcmp(r.op, "exec-sync-stream") == 0)
		return exec_start(c, &r, t);
	if (strcmp(r.op, "state") == 0) {
		reply(c, "{\"result\":%s}\n", t->state_json);
		return 0;
	}
	if (strcmp(r.op, "kill") == 0) {
		if (!r.has_signal || r.signal <= 0 || r.signal > 64 || r.all)
			return -1;
		if (t->running && t->pid > 1 && kill(t->pid, (int)r.signal) != 0)
			return -1;
		reply(c, "{\"result\":{}}\n");
		return 0;
	}
	if (strcmp(r.op, "reopen-log") == 0) {
		if (!t->running || log_reopen(t) != 0)
			return -1;
		reply(c, "{\"result\":{}}\n");
		return 0;
	}
	return -1;
}

static void conn_read(struct conn *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);
	char *nl;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(c->fd);
		c->fd = -1;
		return;
	}
	c->len += (size_t)n;
	while (c->fd >= 0 && (nl = memchr(c->buf, '\n', c->len))) {
		size_t line = (size_t)(nl - c->buf);
		if (serve(c, c->buf, line) != 0)
			promote("op");
		if (c->fd < 0)
			return; /* an exec took the connection */
		memmove(c->buf, nl + 1, c->len - line - 1);
		c->len -= line + 1;
	}
	if (c->len == sizeof c->buf)
		promote("long request");
}

static void accept_conn(void)
{
	int fd = accept4(g.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int i;

	if (fd < 0)
		return;
	for (i = 0; i < MAX_CONNS; i++) {
		if (conns[i].fd < 0) {
			conns[i].fd = fd;
			conns[i].len = 0;
			watch(fd, EV_CONN, i);
			return;
		}
	}
	/* Busier than a monitor is for: the Go shim takes the lot. */
	close(fd);
	promote("connections");
}

/* Reaps what is not a container's init nor the pause; their exits are
 * the Go shim's to record (OOM count, leftovers, drain, exit record):
 * WNOWAIT leaves them zombies for it. */
static void children(void)
{
	for (;;) {
		siginfo_t si;
		int i, r, status = 0;

		memset(&si, 0, sizeof si);
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
			return;
		if (si.si_pid == g.pause_pid)
			promote("pause exited");
		for (i = 0; i < g.nctr; i++) {
			if (ctrs[i].running && ctrs[i].pid == si.si_pid)
				promote("container exited");
		}
		r = waitpid(si.si_pid, &status, WNOHANG);
		if (r < 0 && errno != EINTR)
			return;
		if (r == si.si_pid)
			exec_reaped(r, status);
	}
}

static void on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(g.sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			g.term = 1;
			promote("signal");
		}
	}
	children();
}

void berth_nsenter(void);

int main(int argc, char **argv)
{
	sigset_t mask;
	int i;

	/* Started as an exec's helper (runtime/process, ExecOpts.PlanPath):
	 * runtime/nsenter's C code joins the container and finishes the exec
	 * from its plan with an execve. This static binary starts in a fraction
	 * of berth-shim's time (no dynamic loader, a few pages). */
	if (getenv("_BERTH_NSENTER")) {
		const char *fd = getenv("_BERTH_SYNC_FD");

		berth_nsenter();
		if (fd)
			dprintf(atoi(fd), "error berth-mon: an exec without a plan needs berth-shim\n");
		return 1;
	}

	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--state-fd") == 0 && field_int(argv[i + 1], &g.state_fd) == 0)
			continue;
		if (strcmp(argv[i], "--id") == 0 || strcmp(argv[i], "--state-dir") == 0)
			continue; /* for ps and berthd's search of shims */
	}
	/* An exec through a descriptor names the process after the fd's
	 * number: ps, top and make bench look for this name. */
	if (prctl(PR_SET_NAME, "berth-mon", 0, 0, 0) != 0)
		warnx_("set name: %s", strerror(errno));
	if (g.state_fd < 3 || load_state() != 0) {
		warnx_("bad state");
		if (g.exe_fd >= 0 && g.state_fd >= 3)
			promote("bad state");
		return 1;
	}
	for (i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	/* The Go shim blocked these before its execve: what came since is
	 * pending and read here. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (g.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		warnx_("set up: %s", strerror(errno));
		promote("set up");
	}
	watch(g.sig_fd, EV_SIG, 0);
	watch(g.listen_fd, EV_LISTEN, 0);
	for (i = 0; i < 2 * g.nctr; i++) {
		if (streams[i].fd >= 0)
			watch(streams[i].fd, EV_STREAM, i);
	}
	/* An exit during the switch left a zombie and maybe no signal. */
	children();
	for (;;) {
		struct epoll_event ev[16];
		int n = epoll_wait(epoll_fd, ev, 16, -1), k;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			warnx_("epoll_wait: %s", strerror(errno));
			promote("epoll");
		}
		for (k = 0; k < n; k++) {
			unsigned kind = (unsigned)(ev[k].data.u64 >> 32);
			unsigned idx = (unsigned)ev[k].data.u64;
			switch (kind) {
			case EV_SIG:
				on_signal();
				break;
			case EV_LISTEN:
				accept_conn();
				break;
			case EV_CONN:
				if (conns[idx].fd >= 0)
					conn_read(&conns[idx]);
				break;
			case EV_XCONN:
			case EV_XOUT:
			case EV_XTIMER:
				exec_event(kind, idx);
				break;
			case EV_STREAM: {
				struct stream *s = &streams[idx];
				int fd = s->fd;
				if (fd < 0)
					break;
				log_stream_read(s, ctrs[s->ctr].log_fd);
				if (s->fd < 0 && epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL) != 0)
					promote("epoll");
				break;
			}
			}
		}
	}
}
