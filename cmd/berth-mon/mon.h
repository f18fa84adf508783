/*
 * berth-mon: the idle form of a pod's berth-shim (docs/design.md, "The C
 * monitor"). The Go shim execs it in its own process once idle; it copies
 * the containers' output into their CRI logs, answers the cheap ops of the
 * control protocol and execs the Go shim back ("promotes") for anything
 * else. Single-threaded, fixed buffers, no allocation: what it touches is
 * what a pod pays.
 */
#ifndef BERTH_MON_H
#define BERTH_MON_H

#include <stddef.h>
#include <sys/types.h>

/* The Go shim does not demote with more (cmd/berth-shim/demote.go). */
#define MAX_CTRS 64
#define MAX_CONNS 16
/* A record longer than this is split, as runtime/crilog does (16 KiB). */
#define CRI_LINE 16384
/* A request that does not fit is handed to the Go shim unparsed. */
#define CONN_BUF 4096
#define PATH_BUF 4096
#define ID_BUF 256
#define STATE_JSON 1024

struct stream {
	int fd; /* -1: none or at its end */
	const char *name; /* "stdout" or "stderr" */
	int ctr;
	size_t len; /* bytes of an unfinished line in buf */
	char buf[CRI_LINE];
};

/* What an ExecSync into a container joins, from the Go shim's "exec"
 * line (cmd/berth-shim/monstate.go, process.ShareExec); ok 0: none, the
 * Go shim serves it. */
#define EXEC_MAX_NS 8
#define EXEC_MAX_TASKS 32
struct exec_files {
	int ok;
	int pidns, cgroup_dir, seccomp;
	long plan_off;
	long head_len, env_len;
	int nns, ns_fd[EXEC_MAX_NS], ns_flag[EXEC_MAX_NS];
	int ntasks, tasks[EXEC_MAX_TASKS];
};

struct ctr {
	char id[ID_BUF];
	struct exec_files x;
	int pid;
	int running;
	int log_fd; /* -1: output discarded */
	char log_dir[PATH_BUF];
	char log_name[PATH_BUF];
	char state_json[STATE_JSON];
};

struct conn {
	int fd; /* -1: free */
	size_t len;
	char buf[CONN_BUF];
};

/* log.c */
void log_stream_read(struct stream *s, int log_fd);
void log_stream_flush(struct stream *s, int log_fd);
int log_reopen(struct ctr *c);

/* req.c: the fields of a request the monitor may serve itself. */
#define MAX_ARGS 256
struct request {
	char op[32];
	char id[ID_BUF];
	long signal;
	int all;
	int has_id, has_signal;
	/* exec-sync-stream: cmd's strings one after the other in argbuf */
	int has_cmd, nargs;
	char *args[MAX_ARGS + 1];
	char argbuf[CONN_BUF];
	long long timeout, max_output; /* ns, bytes; 0 when absent */
};
int parse_request(const char *line, size_t len, struct request *r);
/* Writes s as a JSON string if it needs no escaping; -1 otherwise. */
int json_plain(const char *s);

/* main.c: a state field that is a descriptor, pid or small count. */
int field_int(const char *f, int *v);

/* exec.c: ExecSync served here (exec-sync-stream). */
#define MAX_EXECS 8
int exec_load(struct ctr *c, char **f, int n);
void exec_plans(int fd);
int exec_start(struct conn *c, const struct request *r, struct ctr *t);
void exec_event(unsigned kind, unsigned idx);
int exec_reaped(int pid, int status);
void exec_handover(void (*append)(const char *fmt, ...));
int watch_fd(int fd, int kind, int idx);
enum { EV_SIG = 1, EV_LISTEN, EV_CONN, EV_STREAM, EV_XCONN, EV_XOUT, EV_XTIMER };
extern int epoll_fd;

void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
