// Package containerinit is the container side of berth's runtime: it runs in
// the new process (berth-shim init) after runtime/nsenter put it into its
// namespaces, builds the container's filesystem view from the OCI spec,
// drops privileges, reports "ready" to its creator, waits for the start
// message and execs the user's command.
//
// The creator talks to it over a unix socket (fd given in _BERTH_SYNC_FD),
// in lines of text:
//
//	init → creator  "ready"            set up, waiting for start
//	init → creator  "console" + fd     the pty master (spec.Process.Terminal)
//	init → creator  "error <message>"  setup or exec failed; init exits
//	creator → init  "start"            exec the command now
//
// After "start" the socket closes on a successful exec (close-on-exec).
package containerinit

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/sysctl"
)

// Messages of the sync protocol.
const (
	MsgReady   = "ready"
	MsgConsole = "console"
	MsgError   = "error"
	MsgStart   = "start"
	// The init's createContainer hooks must run after the creator's
	// prestart and createRuntime hooks: it asks for those (init → creator)
	// and waits for the answer (creator → init) before its own.
	MsgNodeHooks     = "node-hooks"
	MsgNodeHooksDone = "node-hooks-done"
)

// SyncFDEnv names the environment variable holding the sync socket's fd.
const SyncFDEnv = "_BERTH_SYNC_FD"

// ExecFlag, as the init's argument instead of a bundle dir, makes it run a
// process in an existing container: nsenter joined the container's
// namespaces (the mount one included), and the spec, whose process is the
// one to run, comes as the first line on the sync socket.
const ExecFlag = "--exec"

// LockThread must be called from an init function of the main package of
// the init role: credentials, capabilities and no_new_privs are set per
// thread, and execve keeps those of the calling thread, so all of it must
// happen on one thread, the main one.
func LockThread() { runtime.LockOSThread() }

// Main is the init role: it never returns when the command was executed;
// otherwise it returns the exit status after reporting the error.
func Main(args []string) int {
	fdStr := os.Getenv(SyncFDEnv)
	fd, err := strconv.Atoi(fdStr)
	if err != nil || len(args) != 1 {
		fmt.Fprintln(os.Stderr, "berth-shim init: must be started by berth-shim (no sync fd or bundle)")
		return 2
	}
	unix.CloseOnExec(fd)
	sync := os.NewFile(uintptr(fd), "sync")
	run := runCreate
	if args[0] == ExecFlag {
		run = runExec
	}
	if err := run(args[0], sync); err != nil {
		fmt.Fprintf(sync, "%s %s\n", MsgError, strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	return 0
}

func runCreate(bundle string, sync *os.File) error {
	// The spec comes on the sync socket, as for an exec: the shim has it
	// parsed, and the root of a user namespace could not read config.json.
	r := bufio.NewReader(sync)
	spec, err := readSpecLine(r)
	if err != nil {
		return err
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return fmt.Errorf("spec has no process args")
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	var hooks *hookRunner
	if spec.Hooks != nil {
		hooks = newHookRunner(spec, bundle)
		//lint:ignore SA1019 prestart hooks are still handed out (NRI's generator).
		if h := spec.Hooks; len(h.CreateContainer) > 0 && len(h.Prestart)+len(h.CreateRuntime) > 0 {
			hooks.nodeFirst = func() error { return awaitNodeHooks(r, sync) }
		}
	}
	if err := setupRootfs(spec, rootfs, hooks); err != nil {
		return err
	}
	if err := setupNamespaced(spec); err != nil {
		return err
	}
	if err := protectRootfs(spec); err != nil {
		return err
	}
	return finish(spec, r, sync, hooks)
}

// awaitNodeHooks has the creator run the prestart and createRuntime hooks.
func awaitNodeHooks(r *bufio.Reader, sync *os.File) error {
	if _, err := fmt.Fprintln(sync, MsgNodeHooks); err != nil {
		return fmt.Errorf("ask for createRuntime hooks: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		// The creator went away or its hook failed: nothing must run.
		os.Exit(1)
	}
	if strings.TrimSpace(line) != MsgNodeHooksDone {
		return fmt.Errorf("unexpected message %q", line)
	}
	return nil
}

// readSpecLine reads a spec sent on the sync socket (one line).
func readSpecLine(r *bufio.Reader) (*specs.Spec, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return decodeSpec(line)
}

func decodeSpec(data []byte) (*specs.Spec, error) {
	spec, err := parseSpec(data)
	if err != nil {
		return nil, fmt.Errorf("parse spec: %w", err)
	}
	if spec.Root == nil || spec.Linux == nil {
		return nil, fmt.Errorf("spec has no root or linux section")
	}
	return spec, nil
}

func runExec(_ string, sync *os.File) error {
	r := bufio.NewReader(sync)
	spec, err := readSpecLine(r)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return fmt.Errorf("exec spec has no process args")
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	// Joining the mount namespace put us at its root, the container's.
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return finish(spec, r, sync, nil)
}

// finish drops privileges, reports ready, waits for start and execs.
// An exec runs no hooks (nil).
func finish(spec *specs.Spec, r *bufio.Reader, sync *os.File, hooks *hookRunner) error {
	if spec.Process.Terminal {
		if err := setupConsole(spec.Process, sync); err != nil {
			return err
		}
	}
	if err := loadSeccomp(spec, true); err != nil {
		return err
	}
	if err := setupProcess(spec); err != nil {
		return err
	}
	env := spec.Process.Env
	path, err := lookPath(spec.Process.Args[0], env)
	if err != nil {
		return err
	}
	if err := loadSeccomp(spec, false); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(sync, MsgReady); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		// The creator went away: nothing must run.
		os.Exit(1)
	}
	if strings.TrimSpace(line) != MsgStart {
		return fmt.Errorf("unexpected message %q", line)
	}
	if hooks != nil {
		if err := hooks.run("startContainer", spec.Hooks.StartContainer, specs.StateCreated); err != nil {
			return err
		}
	}
	resetSignals()
	closeExtraFDs()
	if err := unix.Exec(path, spec.Process.Args, env); err != nil {
		return fmt.Errorf("exec %s: %w", spec.Process.Args[0], err)
	}
	return nil
}

// newNamespace reports whether the spec asks for a new namespace of kind t.
func newNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return ns.Path == ""
		}
	}
	return false
}

// setupNamespaced applies what belongs to namespaces the container owns or
// shares with its pod: hostname, sysctls.
func setupNamespaced(spec *specs.Spec) error {
	if newNamespace(spec, specs.UTSNamespace) {
		if spec.Hostname != "" {
			if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
				return fmt.Errorf("set hostname: %w", err)
			}
		}
		if spec.Domainname != "" {
			if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
				return fmt.Errorf("set domainname: %w", err)
			}
		}
	}
	// /proc is the container's procfs by now; a mount the request put
	// over part of /proc/sys is not crossed (sysctl.Write).
	for key, value := range spec.Linux.Sysctl {
		if err := sysctl.Write("/proc/sys", key, value); err != nil {
			return err
		}
	}
	return nil
}

// lookPath finds the command in the container's PATH as the container's
// user, so that a missing command fails the create, not the start.
func lookPath(file string, env []string) (string, error) {
	check := func(p string) error {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() {
			return fmt.Errorf("is a directory")
		}
		return unix.Access(p, unix.X_OK)
	}
	if strings.Contains(file, "/") {
		if err := check(file); err != nil {
			return "", fmt.Errorf("exec %s: %w", file, err)
		}
		return file, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if check(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %s: executable file not found in $PATH", file)
}
