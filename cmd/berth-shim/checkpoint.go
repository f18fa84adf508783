package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/checkpoint"
	"github.com/berth-dev/berth/runtime/shim"
)

// Checkpoint: the shim runs `criu dump` on a running container, leaving it
// running. The pod's namespaces (a path in the spec) and the mounts whose
// content is not the container's (bind mounts) are marked external: they
// are not the container's to dump, and a restore provides its own.

func init() { handlers[shim.OpCheckpoint] = handleCheckpoint }

func handleCheckpoint(s *server, raw json.RawMessage) (any, error) {
	a, c, err := containerOf[shim.CheckpointArgs](raw)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(a.CRIU) || !filepath.IsAbs(a.ImagesDir) || !filepath.IsAbs(a.WorkDir) {
		return nil, fmt.Errorf("checkpoint %s: criu, images and work dir must be absolute: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	// Held so that the container is not started or deleted under the dump.
	c.startMu.Lock()
	defer c.startMu.Unlock()
	st := c.snapshot()
	if st.Status != shim.StatusRunning {
		return nil, fmt.Errorf("checkpoint: container %s is %s, not running: %w", a.ID, st.Status, errdefs.ErrFailedPrecondition)
	}
	o, err := dumpOpts(c.spec, st.Pid)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", a.ID, err)
	}
	o.ImagesDir, o.WorkDir, o.LeaveRunning = a.ImagesDir, a.WorkDir, true
	if err := runDump(s, a, o); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", a.ID, err)
	}
	return struct{}{}, nil
}

// dumpOpts says what of the container at pid is external to it.
func dumpOpts(spec *specs.Spec, pid int) (checkpoint.DumpOpts, error) {
	o := checkpoint.DumpOpts{Pid: pid, ShellJob: spec.Process.Terminal, ExternalNS: map[string]uint64{}}
	for _, ns := range spec.Linux.Namespaces {
		kind := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.PIDNamespace: "pid"}[ns.Type]
		if kind == "" || ns.Path == "" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
			return o, fmt.Errorf("%s namespace: %w", kind, err)
		}
		o.ExternalNS[kind] = st.Ino
	}
	for _, m := range spec.Mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			o.ExternalMounts = append(o.ExternalMounts, m.Destination)
		}
	}
	// Mounts of part of a file system (masked and read-only paths, the
	// ones a spec bind mount made) are bind mounts too.
	binds, err := bindMounts(pid)
	if err != nil {
		return o, err
	}
	for _, b := range binds {
		if !slices.Contains(o.ExternalMounts, b) {
			o.ExternalMounts = append(o.ExternalMounts, b)
		}
	}
	return o, nil
}

// bindMounts are the mount points, as the process at pid sees them, of
// mounts whose root is not their file system's.
func bindMounts(pid int) ([]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[3] == "/" || fields[4] == "/" {
			continue
		}
		out = append(out, unescapeMountinfo(fields[4]))
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// runDump runs criu as a child of the shim; the shim's reaper, which waits
// for every child, hands over its exit.
func runDump(s *server, a shim.CheckpointArgs, o checkpoint.DumpOpts) error {
	out, err := os.CreateTemp(a.WorkDir, ".criu-output-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := checkpoint.DumpCommand(a.CRIU, o, out)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start criu: %w", err)
	}
	exited := s.reaper.watchLive(cmd.Process.Pid)
	var timeout <-chan time.Time
	if a.Timeout > 0 {
		t := time.NewTimer(a.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var ws unix.WaitStatus
	select {
	case ws = <-exited:
	case <-timeout:
		// CRIU unfreezes and releases the tree when killed.
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case ws = <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			ws = <-exited
		}
		return fmt.Errorf("criu dump did not finish in %s: %w", a.Timeout, context.DeadlineExceeded)
	}
	_ = cmd.Process.Release()
	if ws.Exited() && ws.ExitStatus() == 0 {
		return nil
	}
	output, _ := os.ReadFile(out.Name())
	return checkpoint.DumpError(o, errors.New(describe(ws)), output)
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}
