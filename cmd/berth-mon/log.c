/*
 * The CRI log as runtime/crilog writes it: "<RFC3339Nano> <stream> <P|F>
 * <text>\n", lines split at CRI_LINE bytes, a "\r\n" end dropped whole, text
 * left at the stream's end written as a partial record.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mon.h"

/* Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped,
 * no fraction at all for a whole second. */
static size_t stamp(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	char frac[16];
	size_t n;
	int i;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm))
		return 0;
	n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0)
		return 0;
	if (ts.tv_nsec != 0) {
		snprintf(frac, sizeof frac, ".%09ld", ts.tv_nsec);
		for (i = 9; frac[i] == '0'; i--)
			frac[i] = '\0';
		if (n + strlen(frac) + 2 > cap)
			return 0;
		memcpy(out + n, frac, strlen(frac));
		n += strlen(frac);
	}
	out[n++] = 'Z';
	return n;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* A log that cannot be written loses lines, not the
			 * stream (as the Go shim): the container never blocks. */
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* One record in one write, so stdout and stderr never interleave inside
 * a line (O_APPEND). */
static void record(int log_fd, const char *stream, int partial, const char *text, size_t len)
{
	static char rec[CRI_LINE + 64];
	size_t n;

	if (log_fd < 0)
		return;
	n = stamp(rec, 48);
	if (n == 0)
		return;
	n += (size_t)snprintf(rec + n, 16, " %s %c ", stream, partial ? 'P' : 'F');
	memcpy(rec + n, text, len);
	n += len;
	rec[n++] = '\n';
	write_all(log_fd, rec, n);
}

/* Writes the complete lines in s->buf and keeps the rest. */
static void split(struct stream *s, int log_fd)
{
	size_t start = 0;
	char *nl;

	while (start < s->len && (nl = memchr(s->buf + start, '\n', s->len - start))) {
		size_t end = (size_t)(nl - s->buf);
		size_t n = end - start;
		if (n > 0 && s->buf[end - 1] == '\r')
			n--;
		record(log_fd, s->name, 0, s->buf + start, n);
		start = end + 1;
	}
	if (start == 0 && s->len == sizeof s->buf) {
		/* A full buffer without a line end: a partial record. A '\r'
		 * at its end may begin a "\r\n": it goes with the next read. */
		size_t n = s->len;
		if (s->buf[n - 1] == '\r' && n > 1)
			n--;
		record(log_fd, s->name, 1, s->buf, n);
		memmove(s->buf, s->buf + n, s->len - n);
		s->len -= n;
		return;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
}

/* Reads what the stream has; at its end (or a read error, EIO of a
 * terminal whose other side closed) the rest is written and fd set -1:
 * the descriptor stays open for the Go shim, which sees the end too. */
void log_stream_read(struct stream *s, int log_fd)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		log_stream_flush(s, log_fd);
		s->fd = -1;
		return;
	}
	s->len += (size_t)n;
	split(s, log_fd);
}

/* Writes an unfinished line as a partial record: before a hand-off, and at
 * the stream's end. */
void log_stream_flush(struct stream *s, int log_fd)
{
	if (s->len > 0)
		record(log_fd, s->name, 1, s->buf, s->len);
	s->len = 0;
}

/* The log dir is a place others can write to: resolve below it only, no
 * symlink anywhere (runtime/safefile). */
static int open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (unsigned long long)(flags | O_CLOEXEC),
		.mode = mode,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int i;

	for (i = 0; i < 16; i++) {
		long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
		if (fd >= 0 || (errno != EINTR && errno != EAGAIN))
			return (int)fd;
	}
	return -1;
}

/* Reopens the log after a rotation as crilog.File.Reopen does, onto the
 * same descriptor number (the state blob names it). Any failure returns
 * -1 and changes nothing: the Go shim then tries and tells why. */
int log_reopen(struct ctr *c)
{
	const int flags = O_WRONLY | O_APPEND | O_NOCTTY | O_NONBLOCK;
	struct stat st;
	char parent[PATH_BUF];
	const char *base = c->log_name;
	char *slash = strrchr(c->log_name, '/');
	int top, dir, fd, created = 1, i;

	if (c->log_fd < 0)
		return -1;
	top = open(c->log_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0)
		return -1;
	dir = top;
	if (slash) {
		/* The kubelet's "<container>/<n>.log": the dir below the log
		 * dir, itself resolved beneath it. A missing one is made by
		 * the Go shim (MkdirAll). */
		size_t n = (size_t)(slash - c->log_name);
		memcpy(parent, c->log_name, n);
		parent[n] = '\0';
		base = slash + 1;
		dir = open_beneath(top, parent, O_RDONLY | O_DIRECTORY, 0);
		close(top);
		if (dir < 0)
			return -1;
	}
	fd = -1;
	for (i = 0; i < 4 && fd < 0; i++) {
		fd = open_beneath(dir, base, flags | O_CREAT | O_EXCL, 0640);
		created = fd >= 0;
		if (fd < 0 && errno == EEXIST)
			fd = open_beneath(dir, base, flags, 0);
		if (fd < 0 && errno != ENOENT)
			break;
	}
	close(dir);
	if (fd < 0)
		return -1;
	/* Only a regular file of its own: a hard link to a host file would
	 * have us write to it. */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (!created && st.st_nlink != 1) ||
	    fcntl(fd, F_SETFL, O_WRONLY | O_APPEND | O_NOCTTY) != 0 || dup2(fd, c->log_fd) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}
