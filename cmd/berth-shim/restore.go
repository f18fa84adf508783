package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/checkpoint"
	"github.com/berth-dev/berth/runtime/process"
	"github.com/berth-dev/berth/runtime/shim"
)

// Restore: a container created from a checkpoint has no process until
// OpStart, where CRIU restores the checkpoint's in the container's rootfs,
// cgroup and pod namespaces, with new pipes for its old stdio; the shim
// (CRIU's parent, a subreaper) becomes the restored init's parent.

// restoreTimeout bounds a restore.
const restoreTimeout = 5 * time.Minute

// pendingRestore is what a restore needs: CRIU's images and the child
// ends of the container's stdio, held until the restore.
type pendingRestore struct {
	images, criu string
	stdio        [3]*os.File
}

// awaitRestore finishes the create of a container to be restored: its
// output is copied from now on, and no process is made yet.
func (c *container) awaitRestore(a shim.CreateArgs, opts process.CreateOpts, childEnds *[]*os.File) (*container, error) {
	if !filepath.IsAbs(a.RestoreFrom) || !filepath.IsAbs(a.CRIU) {
		return nil, fmt.Errorf("container %s: restore images and criu must be absolute: %w", a.ID, errdefs.ErrInvalidArgument)
	}
	if c.spec.Process.Terminal {
		return nil, fmt.Errorf("container %s: restoring a container with a terminal is not supported: %w", a.ID, errdefs.ErrFailedPrecondition)
	}
	// Kept open past the create (which closes the child ends it holds).
	*childEnds = nil
	c.restore = &pendingRestore{images: a.RestoreFrom, criu: a.CRIU, stdio: [3]*os.File{opts.Stdin, opts.Stdout, opts.Stderr}}
	streams := []string{"stdout", "stderr"}
	for i, r := range c.outputs {
		c.copiers.Add(1)
		go c.copyOutput(streams[i], r)
	}
	c.state = shim.ContainerState{ID: a.ID, Status: shim.StatusCreated}
	return c, nil
}

// process is the container's process; nil while it awaits its restore.
func (c *container) process() *process.Container {
	containers.mu.Lock()
	defer containers.mu.Unlock()
	return c.proc
}

// dropRestore gives up a restore that did not happen (the container is
// deleted): nothing runs, so the container is over.
func (c *container) dropRestore() {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if c.restore == nil || c.process() != nil {
		return
	}
	c.closeStdio()
	c.restore = nil
	c.drain()
	containers.mu.Lock()
	c.state.Status = shim.StatusExited
	c.state.FinishedAt = time.Now().UTC()
	containers.mu.Unlock()
	close(c.done)
}

func (c *container) closeStdio() {
	for _, f := range c.restore.stdio {
		if f != nil {
			f.Close()
		}
	}
}

// restoreProcess runs `criu restore` (called with startMu held, as a
// start) and adopts the restored init.
func (c *container) restoreProcess(s *server) error {
	r := c.restore
	work := filepath.Dir(r.images)
	o := checkpoint.RestoreOpts{ImagesDir: r.images, WorkDir: work, Root: c.spec.Root.Path,
		Mounts: map[string]string{}, InheritFDs: map[string]int{}, JoinNS: map[string]string{}}
	var extra []*os.File
	inherit := func(key string, f *os.File) {
		o.InheritFDs[key] = 3 + len(extra)
		extra = append(extra, f)
	}
	data, err := os.ReadFile(filepath.Join(r.images, checkpoint.DescriptorsFile))
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var descs []string
	if err := json.Unmarshal(data, &descs); err != nil {
		return fmt.Errorf("restore: %s: %v: %w", checkpoint.DescriptorsFile, err, errdefs.ErrInvalidArgument)
	}
	for i, d := range descs {
		switch {
		case i >= 3:
		case strings.HasPrefix(d, "pipe:") && r.stdio[i] != nil:
			inherit(d, r.stdio[i])
		case strings.HasPrefix(d, "file["):
			// The shim's /dev/null for no stdin, or the new pipe.
			f := r.stdio[i]
			if f == nil {
				if f, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				defer f.Close()
			}
			inherit(d, f)
		}
	}
	for _, ns := range c.spec.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		switch ns.Type {
		case specs.NetworkNamespace, specs.PIDNamespace:
			f, err := os.Open(ns.Path)
			if err != nil {
				return fmt.Errorf("restore: %s namespace: %w", ns.Type, err)
			}
			defer f.Close()
			kind := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.PIDNamespace: "pid"}[ns.Type]
			inherit(checkpoint.ExtNSKey(kind), f)
		case specs.IPCNamespace, specs.UTSNamespace:
			o.JoinNS[string(ns.Type)] = ns.Path
		}
	}
	for _, m := range c.spec.Mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			o.Mounts[m.Destination] = m.Source
		}
	}
	pid, err := runRestore(s, c.spec, r.criu, o, extra)
	if err != nil {
		return err
	}
	proc, err := process.Adopt(pid, c.spec)
	if err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("restore: %w", err)
	}
	// The restored process holds its own copies now.
	c.closeStdio()
	exited := s.reaper.watchLive(pid)
	containers.mu.Lock()
	c.proc, c.restore = proc, nil
	c.state.Pid = pid
	containers.mu.Unlock()
	go c.reap(exited)
	return nil
}

// runRestore runs criu, born in the container's cgroup (cgroup v2; on v1
// moved there at once) so that the restored processes are too, and
// returns the restored init's pid.
func runRestore(s *server, spec *specs.Spec, criu string, o checkpoint.RestoreOpts, extra []*os.File) (int, error) {
	out, err := os.CreateTemp(o.WorkDir, ".criu-output-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command(criu, checkpoint.RestoreArgs(o)...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = out, out, extra
	var cg *cgroupfs.Group
	if spec.Linux.CgroupsPath != "" {
		if cg, err = cgroupfs.Open(spec.Linux.CgroupsPath); err != nil {
			return 0, fmt.Errorf("restore: %w", err)
		}
		dir, err := cg.UnifiedDir()
		if err != nil {
			return 0, fmt.Errorf("restore: %w", err)
		}
		if dir != nil {
			defer dir.Close()
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
			cg = nil
		}
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("restore: start criu: %w", err)
	}
	exited := s.reaper.watchLive(cmd.Process.Pid)
	if cg != nil {
		if err := cg.AddProc(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return 0, fmt.Errorf("restore: %w", err)
		}
	}
	var ws unix.WaitStatus
	select {
	case ws = <-exited:
	case <-time.After(restoreTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return 0, fmt.Errorf("criu restore did not finish in %s", restoreTimeout)
	}
	_ = cmd.Process.Release()
	if !ws.Exited() || ws.ExitStatus() != 0 {
		output, _ := os.ReadFile(out.Name())
		why := strings.TrimSpace(string(output))
		if log, err := os.ReadFile(filepath.Join(o.WorkDir, checkpoint.RestoreLog)); err == nil && len(log) > 0 {
			why = checkpoint.Errors(log)
		}
		return 0, fmt.Errorf("criu restore failed (%s): %s: %w", describe(ws), why, errdefs.ErrFailedPrecondition)
	}
	data, err := os.ReadFile(filepath.Join(o.WorkDir, "restore.pid"))
	if err != nil {
		return 0, fmt.Errorf("restore: pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, errors.New("restore: bad pid file " + strings.TrimSpace(string(data)))
	}
	return pid, nil
}
