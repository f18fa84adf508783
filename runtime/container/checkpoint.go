package container

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/checkpoint"
	"github.com/berth-dev/berth/runtime/safefile"
	"github.com/berth-dev/berth/runtime/shim"
)

// Checkpoint dumps a running container with CRIU (through its pod's shim),
// leaving it running, and writes the archive (package checkpoint's layout)
// to location, a new file. timeout bounds the dump (0: none). A refusal or
// failure leaves no archive and no work files behind.
func (m *Manager) Checkpoint(ctx context.Context, id, location string, timeout time.Duration) (err error) {
	rec, unlock, err := m.locked(id)
	if err != nil {
		return err
	}
	defer unlock()
	id = rec.ID
	if rec, err = m.refresh(ctx, rec, false); err != nil {
		return err
	}
	if rec.Status.State != Running {
		return fmt.Errorf("checkpoint: container %s is %s, not running: %w", id, rec.Status.State, errdefs.ErrFailedPrecondition)
	}
	target, err := checkpoint.CreateTarget(location, []string{m.opts.Root, m.opts.State})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if derr := target.Discard(); derr != nil {
				klog.InfoS("Removing a failed checkpoint archive", "container", id, "location", location, "err", derr)
			}
		}
	}()
	criu, err := checkpoint.Check(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	// On the disk of the writable layer: the images hold the process's
	// memory, and the state dir may be in memory.
	work, err := os.MkdirTemp(rec.LayerDir, "checkpoint-")
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	defer os.RemoveAll(work)
	images := filepath.Join(work, metadata.CheckpointDirectory)
	if err := os.Mkdir(images, 0o700); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	start := time.Now()
	args := shim.CheckpointArgs{ID: id, CRIU: criu, ImagesDir: images, WorkDir: work, Timeout: timeout}
	if err := shim.Connect(rec.ShimDir).Call(ctx, shim.OpCheckpoint, args, nil); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", id, err)
	}
	dumped := time.Now()
	if err := m.describe(rec, work, dumped); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	if err := checkpoint.Pack(work, target.File); err != nil {
		return fmt.Errorf("checkpoint %s: write %s: %w", id, location, err)
	}
	if err := target.Commit(); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	klog.V(2).InfoS("Checkpointed container", "container", id, "location", location,
		"dump", dumped.Sub(start), "total", time.Since(start))
	return nil
}

// describe writes, beside CRIU's images in work, what a restore needs to
// rebuild the container: its config, spec, rootfs changes and log.
func (m *Manager) describe(rec *Record, work string, at time.Time) error {
	cfg := checkpoint.Config{
		ID: rec.ID, Name: rec.Name,
		RootfsImage: rec.UserImage, RootfsImageRef: rec.ImageID, RootfsImageName: rec.Image,
		OCIRuntime: "berth", CreatedTime: rec.Status.CreatedAt, CheckpointedAt: at,
	}
	if cfg.RootfsImage == "" {
		cfg.RootfsImage = rec.Image
	}
	if err := checkpoint.WriteJSON(work, metadata.ConfigDumpFile, cfg); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(rec.StateDir, specFile), filepath.Join(work, metadata.SpecDumpFile)); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if err := checkpoint.WriteRootfsDiff(filepath.Join(rec.LayerDir, "upper"), work); err != nil {
		return err
	}
	stats := filepath.Join(work, metadata.CheckpointDirectory, checkpoint.StatsDumpFile)
	if _, err := os.Stat(stats); err == nil {
		if err := copyFile(stats, filepath.Join(work, checkpoint.StatsDumpFile)); err != nil {
			return fmt.Errorf("stats: %w", err)
		}
	}
	return copyLog(rec.LogPath, filepath.Join(work, checkpoint.ContainerLogFile))
}

// copyLog copies the container's CRI log; the kubelet may have rotated it
// away (no log then). Its path came from a request: no symlink is followed.
func copyLog(logPath, to string) error {
	if logPath == "" {
		return nil
	}
	dir, err := safefile.OpenDir(filepath.Dir(logPath))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("log: %w", err)
	}
	defer dir.Close()
	f, err := dir.OpenFile(filepath.Base(logPath), os.O_RDONLY, 0)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("log: %w", err)
	}
	defer f.Close()
	return copyFrom(f, to)
}

func copyFile(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	return copyFrom(f, to)
}

func copyFrom(r io.Reader, to string) error {
	w, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
