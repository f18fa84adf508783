/*
 * Just enough JSON to read a request of the control protocol
 * (runtime/shim/protocol.go): {"op":..., "args":{"id":..., "signal":...,
 * "all":...}}. Whatever this parser does not take for sure (an escape
 * beyond ASCII, a key in other case, a number out of range, bad JSON)
 * makes parse_request fail: the Go shim then reads the request and answers
 * exactly as it always did.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mon.h"

struct parser {
	const char *p, *end;
	int depth;
};

static void ws(struct parser *x)
{
	while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' || *x->p == '\r'))
		x->p++;
}

static int lit(struct parser *x, const char *s)
{
	size_t n = strlen(s);
	if ((size_t)(x->end - x->p) < n || memcmp(x->p, s, n) != 0)
		return -1;
	x->p += n;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Reads a string into out (cap bytes with its NUL; out may be NULL to
 * skip). Only ASCII survives: a \u escape above 0x7f or a raw byte above
 * 0x7f fails, so that what we compare is what Go would decode. */
static int str(struct parser *x, char *out, size_t cap)
{
	size_t n = 0;

	if (x->p >= x->end || *x->p != '"')
		return -1;
	x->p++;
	while (x->p < x->end && *x->p != '"') {
		char c = *x->p++;
		if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x80)
			return -1;
		if (c == '\\') {
			if (x->p >= x->end)
				return -1;
			c = *x->p++;
			switch (c) {
			case '"': case '\\': case '/': break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u': {
				int v = 0, i;
				if (x->end - x->p < 4)
					return -1;
				for (i = 0; i < 4; i++) {
					int h = hexval(x->p[i]);
					if (h < 0)
						return -1;
					v = v * 16 + h;
				}
				if (v == 0 || v >= 0x80)
					return -1;
				x->p += 4;
				c = (char)v;
				break;
			}
			default:
				return -1;
			}
		}
		if (out) {
			if (n + 1 >= cap)
				return -1;
			out[n++] = c;
		}
	}
	if (x->p >= x->end)
		return -1;
	x->p++;
	if (out)
		out[n] = '\0';
	return 0;
}

static int value(struct parser *x);

/* Calls field(key) positioned at each member's value; field returns 1 if
 * it consumed the value, 0 to have it skipped, -1 on error. */
static int object(struct parser *x, int (*field)(struct parser *, const char *, void *), void *arg)
{
	char key[32];

	ws(x);
	if (lit(x, "{") != 0 || ++x->depth > 16)
		return -1;
	ws(x);
	if (lit(x, "}") == 0) {
		x->depth--;
		return 0;
	}
	for (;;) {
		int r;
		ws(x);
		if (str(x, key, sizeof key) != 0)
			return -1;
		ws(x);
		if (lit(x, ":") != 0)
			return -1;
		ws(x);
		r = field ? field(x, key, arg) : 0;
		if (r < 0 || (r == 0 && value(x) != 0))
			return -1;
		ws(x);
		if (lit(x, ",") == 0)
			continue;
		if (lit(x, "}") != 0)
			return -1;
		x->depth--;
		return 0;
	}
}

static int value(struct parser *x)
{
	ws(x);
	if (x->p >= x->end)
		return -1;
	switch (*x->p) {
	case '"':
		return str(x, NULL, 0);
	case '{':
		return object(x, NULL, NULL);
	case '[':
		if (++x->depth > 16)
			return -1;
		x->p++;
		ws(x);
		if (lit(x, "]") == 0) {
			x->depth--;
			return 0;
		}
		for (;;) {
			if (value(x) != 0)
				return -1;
			ws(x);
			if (lit(x, ",") == 0)
				continue;
			if (lit(x, "]") != 0)
				return -1;
			x->depth--;
			return 0;
		}
	case 't':
		return lit(x, "true");
	case 'f':
		return lit(x, "false");
	case 'n':
		return lit(x, "null");
	default:
		if (*x->p == '-' || isdigit((unsigned char)*x->p)) {
			while (x->p < x->end && strchr("+-.eE0123456789", *x->p))
				x->p++;
			return 0;
		}
		return -1;
	}
}

/* Go matches keys case-insensitively: a key that only differs in case is
 * left to Go. */
static int same_key(const char *key, const char *want, int *differs)
{
	if (strcmp(key, want) == 0)
		return 1;
	if (strcasecmp(key, want) == 0)
		*differs = 1;
	return 0;
}

struct fields {
	struct request *r;
	int differs;
	size_t argused; /* of r->argbuf */
};

/* An integer as Go decodes one into an int64: a fraction, an exponent or
 * an overflow is Go's error, left to it. */
static int integer(struct parser *x, long long *v)
{
	char num[24];
	char *e;
	const char *start = x->p;

	if (value(x) != 0 || x->p - start >= (long)sizeof num)
		return -1;
	memcpy(num, start, (size_t)(x->p - start));
	num[x->p - start] = '\0';
	errno = 0;
	*v = strtoll(num, &e, 10);
	if (*e != '\0' || num[0] == '\0' || errno != 0)
		return -1;
	return 0;
}

/* cmd: an array of strings (null: none), kept in r->argbuf. */
static int cmd_field(struct parser *x, struct fields *f)
{
	struct request *r = f->r;

	r->has_cmd = 1;
	r->nargs = 0;
	f->argused = 0;
	if (lit(x, "null") == 0)
		return 1;
	if (lit(x, "[") != 0)
		return -1;
	ws(x);
	if (lit(x, "]") == 0)
		return 1;
	for (;;) {
		char *out = r->argbuf + f->argused;
		ws(x);
		if (r->nargs >= MAX_ARGS || str(x, out, sizeof r->argbuf - f->argused) != 0)
			return -1;
		r->args[r->nargs++] = out;
		f->argused += strlen(out) + 1;
		ws(x);
		if (lit(x, ",") == 0)
			continue;
		if (lit(x, "]") != 0)
			return -1;
		r->args[r->nargs] = NULL;
		return 1;
	}
}

static int args_field(struct parser *x, const char *key, void *arg)
{
	struct fields *f = arg;
	if (same_key(key, "id", &f->differs)) {
		f->r->has_id = 1;
		return str(x, f->r->id, sizeof f->r->id) == 0 ? 1 : -1;
	}
	if (same_key(key, "signal", &f->differs)) {
		long long v;
		if (integer(x, &v) != 0)
			return -1;
		f->r->signal = (long)v;
		f->r->has_signal = 1;
		return 1;
	}
	if (same_key(key, "cmd", &f->differs))
		return cmd_field(x, f);
	if (same_key(key, "timeout", &f->differs))
		return integer(x, &f->r->timeout) == 0 ? 1 : -1;
	if (same_key(key, "maxOutput", &f->differs))
		return integer(x, &f->r->max_output) == 0 ? 1 : -1;
	if (same_key(key, "all", &f->differs)) {
		if (lit(x, "true") == 0)
			f->r->all = 1;
		else if (lit(x, "false") == 0)
			f->r->all = 0;
		else
			return -1;
		return 1;
	}
	return 0;
}

static int top_field(struct parser *x, const char *key, void *arg)
{
	struct fields *f = arg;
	if (same_key(key, "op", &f->differs))
		return str(x, f->r->op, sizeof f->r->op) == 0 ? 1 : -1;
	if (same_key(key, "args", &f->differs)) {
		ws(x);
		if (lit(x, "null") == 0)
			return 1;
		return object(x, args_field, f) == 0 ? 1 : -1;
	}
	return 0;
}

int parse_request(const char *line, size_t len, struct request *r)
{
	struct parser x = {line, line + len, 0};
	struct fields f = {r, 0, 0};

	memset(r, 0, sizeof *r);
	if (object(&x, top_field, &f) != 0 || f.differs)
		return -1;
	ws(&x);
	return x.p == x.end ? 0 : -1;
}

/* Go's encoder escapes <, > and & and every control byte; a string with
 * none of those nor a byte beyond ASCII is written as it is. */
int json_plain(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&')
			return -1;
	}
	return 0;
}
