// A spawned exec: the shim starts an exec's process as posix_spawn(3) does,
// with clone3(CLONE_VM | CLONE_VFORK) on a stack of its own, and that
// process joins the container, applies the exec plan (execplan.c) and
// executes the command; the shim's thread waits until it has. No execve of
// a helper and no copy of the shim's memory: an exec costs one execve, the
// command's.
//
// Until its execve the process runs in the shim's memory, so it only makes
// system calls (no malloc, no stdio: another thread may hold their locks),
// with every signal blocked until it has reset all handlers (they are the
// Go runtime's), and it leaves the shim's memory by execve or _exit only.
// The kernel spares a task in vfork from the OOM killer's choice and keeps
// the oom_score_adj it sets its own. The shim is not dumpable, so no
// process of the container can ptrace or read the shared memory without
// CAP_SYS_PTRACE over the node (the Go side spawns only where none can).
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>

#include "execplan.h"
#include "spawn.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif

#define SPAWN_STACK (256 << 10)

struct clone_args_v2 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
		set_tid_size, cgroup;
};

#if defined(__x86_64__)
long berth_clone3(struct clone_args_v2 *args, size_t size, int (*fn)(void *), void *arg);
// The child starts on its own stack with the parent's registers: fn and
// arg ride in r8 and r9, which the system call keeps, and the child never
// returns into the parent's frames.
__asm__(".text\n"
	".globl berth_clone3\n"
	".hidden berth_clone3\n"
	".type berth_clone3, @function\n"
	"berth_clone3:\n"
	"	mov %rdx, %r8\n"
	"	mov %rcx, %r9\n"
	"	mov $435, %eax\n"
	"	syscall\n"
	"	test %rax, %rax\n"
	"	jnz 1f\n"
	"	xor %ebp, %ebp\n"
	"	mov %r9, %rdi\n"
	"	call *%r8\n"
	"	mov %eax, %edi\n"
	"	mov $60, %eax\n"
	"	syscall\n"
	"	hlt\n"
	"1:	ret\n"
	".size berth_clone3, .-berth_clone3\n");
#endif

static struct exec_plan spawn_plan;

// spawn_stack is kept from one spawn to the next (spawns take turns): a
// mapping made and unmade each time costs the shim's threads a TLB
// shootdown each.
static void *spawn_stack;

// no_clear_sighand: the kernel refused CLONE_CLEAR_SIGHAND (before 5.5).
static int no_clear_sighand;

static int spawn_child(void *arg)
{
	struct berth_spawn *s = arg;
	int tmp[3];
	const char *path;

	// The handlers are the Go runtime's: a synchronous signal must not
	// run one here. CLONE_CLEAR_SIGHAND made the handled signals' default
	// already (one system call where resetting each is 62); what the shim
	// ignores stays ignored through it and the command's execve.
	plan_reset_handlers(s->cleared ? s->ignored : PLAN_ALL_SIGNALS);
	spawn_plan.handlers_default = 1;
	// Above 2 first, so that no source is overwritten by another's target.
	for (int i = 0; i < 3; i++)
		if ((tmp[i] = fcntl(s->stdio[i], F_DUPFD_CLOEXEC, 3)) < 0)
			plan_fail(errno, "spawn: stdio");
	for (int i = 0; i < 3; i++)
		if (dup2(tmp[i], i) < 0)
			plan_fail(errno, "spawn: stdio");
	for (int i = 0; i < s->nns; i++) {
		if (setns(s->ns_fd[i], s->ns_flag[i]) < 0)
			plan_fail(errno, "nsenter: join namespace 0x%x", s->ns_flag[i]);
		// As nsenter.c: become root of a joined user namespace.
		if (s->ns_flag[i] == CLONE_NEWUSER &&
		    (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
		     syscall(SYS_setresuid, 0, 0, 0) < 0))
			plan_fail(errno, "nsenter: become root of the user namespace");
	}
	// Writing "0" to a cgroup v1 tasks file moves the writing thread.
	for (int i = 0; i < s->ncgroup; i++)
		if (write(s->cgroup_tasks[i], "0", 1) != 1)
			plan_fail(errno, "nsenter: join cgroup");
	path = plan_apply(&spawn_plan);
	plan_exec(path, &spawn_plan);
}

long berth_spawn_exec(struct berth_spawn *s, const unsigned char *plan, unsigned long plan_len)
{
#if !defined(__x86_64__)
	(void)s;
	(void)plan;
	(void)plan_len;
	return -ENOSYS;
#else
	struct clone_args_v2 ca = {.flags = CLONE_VM | CLONE_VFORK, .exit_signal = SIGCHLD};
	uint64_t all = ~0ULL, old = 0;
	unsigned char *body;
	jmp_buf jb;
	uint32_t len;
	void *stack;
	long pid;

	s->err[0] = '\0';
	s->plan_error = 0;
	if (plan_len < 12 || memcmp(plan, "berthx01", 8) != 0)
		return -EINVAL;
	len = plan[8] | plan[9] << 8 | plan[10] << 16 | (uint32_t)plan[11] << 24;
	if (len != plan_len - 12 || len > PLAN_MAX)
		return -EINVAL;
	body = malloc(len + 1);
	if (!body)
		return -ENOMEM;
	memcpy(body, plan + 12, len);

	memset(&spawn_plan, 0, sizeof(spawn_plan));
	spawn_plan.seccomp_fd = s->seccomp_fd;
	spawn_err = s->err;
	spawn_err_len = sizeof(s->err);
	spawn_errno = 0;
	plan_jmp = &jb;
	if (setjmp(jb)) {
		s->plan_error = 1;
		pid = -EINVAL;
		goto out;
	}
	plan_parse(body, len, &spawn_plan);
	// From here on a failure is the child's: it ends it.
	plan_jmp = NULL;

	if (!spawn_stack) {
		stack = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (stack == MAP_FAILED) {
			pid = -errno;
			goto out;
		}
		// A guard page below the stack.
		mprotect(stack, 4096, PROT_NONE);
		spawn_stack = stack;
	}
	ca.stack = (uintptr_t)spawn_stack;
	ca.stack_size = SPAWN_STACK;
	if (s->cgroup_dir >= 0) {
		ca.flags |= CLONE_INTO_CGROUP;
		ca.cgroup = s->cgroup_dir;
	}
	// The raw call: glibc keeps its own two signals out of a mask.
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, 8);
	s->cleared = !no_clear_sighand;
	if (s->cleared)
		ca.flags |= CLONE_CLEAR_SIGHAND;
	pid = berth_clone3(&ca, sizeof(ca), spawn_child, s);
	if (pid == -EINVAL && s->cleared) {
		// An older kernel; the child resets every handler itself.
		s->cleared = 0;
		ca.flags &= ~CLONE_CLEAR_SIGHAND;
		pid = berth_clone3(&ca, sizeof(ca), spawn_child, s);
		if (pid > 0)
			no_clear_sighand = 1;
	}
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, 8);
out:
	if (s->err[0] && spawn_errno) {
		size_t n = strlen(s->err);
		snprintf(s->err + n, sizeof(s->err) - n, ": %s", strerror(spawn_errno));
	}
	plan_jmp = NULL;
	spawn_err = NULL;
	plan_free(&spawn_plan);
	free(body);
	return pid;
#endif
}
