// The exec plan (containerinit.ExecPlan) parsed, shared by execplan.c and
// spawn.c.
#ifndef BERTH_EXECPLAN_H
#define BERTH_EXECPLAN_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#define PLAN_MAX (8 << 20)
#define PLAN_RLIMITS 64

struct exec_plan {
	uint64_t bnd, eff, prm, inh, amb;
	uint32_t uid, gid, flags, umask, ngroups, nrlimits;
	int32_t oom;
	gid_t *groups;
	struct {
		uint32_t res;
		struct rlimit lim;
	} rl[PLAN_RLIMITS];
	const char *cwd;
	char **args, **env;
	int seccomp_fd; // the compiled seccomp program, or -1
	int handlers_default; // every signal handler is SIG_DFL already
};

extern char *spawn_err;
extern size_t spawn_err_len;
extern int spawn_errno;
extern jmp_buf *plan_jmp;

void plan_fail(int err, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
void plan_parse(unsigned char *body, uint32_t len, struct exec_plan *p);
void plan_free(struct exec_plan *p);
#define PLAN_ALL_SIGNALS (~0ULL)
void plan_reset_handlers(uint64_t mask);
const char *plan_apply(struct exec_plan *p);
void plan_exec(const char *path, struct exec_plan *p) __attribute__((noreturn));

#endif
