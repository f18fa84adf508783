#ifndef BERTH_SPAWN_H
#define BERTH_SPAWN_H

#define SPAWN_MAX_NS 8
#define SPAWN_MAX_CGROUP 32

// berth_spawn is what a spawned exec needs, opened by the shim: namespaces
// in the order they are joined, the cgroup v1 "tasks" files or the cgroup
// v2 directory, the command's stdin, stdout and stderr, the compiled
// seccomp program. err is why it failed, if it did.
struct berth_spawn {
	int ns_fd[SPAWN_MAX_NS];
	int ns_flag[SPAWN_MAX_NS];
	int nns;
	int cgroup_tasks[SPAWN_MAX_CGROUP];
	int ncgroup;
	int cgroup_dir;
	int stdio[3];
	int seccomp_fd;
	// ignored are the signals the shim ignores (bit sig-1): the clone
	// resets only the handled ones (CLONE_CLEAR_SIGHAND).
	unsigned long long ignored;
	int cleared; // set by berth_spawn_exec: the clone reset the handlers
	int plan_error; // err is the plan's fault, nothing was started
	char err[1024];
};

long berth_spawn_exec(struct berth_spawn *s, const unsigned char *plan, unsigned long plan_len);

#endif
