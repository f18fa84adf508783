package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	if err := writeDescriptors(st.Pid, a.ImagesDir, &o); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", a.ID, err)
	}
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
	// Only the spec's bind mounts bring node files in: the masked and
	// read-only paths are binds of the container's own /dev/null and /proc,
	// which CRIU dumps and restores itself.
	for _, m := range spec.Mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			o.ExternalMounts = append(o.ExternalMounts, m.Destination)
		}
	}
	return o, nil
}

// writeDescriptors records what the process's fds 0-2 are (a restore
// hands new ones in for the old): pipes and sockets as their link, a file
// on a mount the container does not see (the /dev/null the shim gives for
// no stdin) as its CRIU key, which the dump must mark external too.
func writeDescriptors(pid int, dir string, o *checkpoint.DumpOpts) error {
	mounts, err := mountIDs(pid)
	if err != nil {
		return err
	}
	var fds []string
	for fd := range 3 {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
		if err != nil || !strings.HasPrefix(l, "/") {
			fds = append(fds, l) // closed (""), pipe:[ino], socket:[ino]
			continue
		}
		mnt, err := fdMountID(pid, fd)
		if err != nil {
			return err
		}
		if mounts[mnt] {
			fds = append(fds, l)
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), &st); err != nil {
			return fmt.Errorf("fd %d: %w", fd, err)
		}
		key := fmt.Sprintf("file[%x:%x]", mnt, st.Ino)
		o.ExternalFiles = append(o.ExternalFiles, key)
		fds = append(fds, key)
	}
	data, err := json.Marshal(fds)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, checkpoint.DescriptorsFile), data, 0o600)
}

// mountIDs are the ids of the mounts the process at pid sees.
func mountIDs(pid int) (map[int]bool, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	ids := map[int]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			if id, err := strconv.Atoi(f[0]); err == nil {
				ids[id] = true
			}
		}
	}
	return ids, nil
}

// fdMountID is the mnt_id of the process's fd (its fdinfo).
func fdMountID(pid, fd int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return 0, fmt.Errorf("fd %d: %w", fd, err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "mnt_id:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("fd %d: no mnt_id in fdinfo", fd)
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
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
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
