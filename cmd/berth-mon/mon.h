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

struct ctr {
	char id[ID_BUF];
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
struct request {
	char op[32];
	char id[ID_BUF];
	long signal;
	int all;
	int has_id, has_signal;
};
int parse_request(const char *line, size_t len, struct request *r);
/* Writes s as a JSON string if it needs no escaping; -1 otherwise. */
int json_plain(const char *s);

void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
