package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/rootfs"
)

// volumesDir holds, in a container's state dir, the mount points of its
// image volumes (one numbered dir each); their upper and work dirs are in
// the same-named dir of its layer dir (an overlay needs them; the container
// sees the volume through a read-only bind).
const volumesDir = "volumes"

// volumeLease is the image lease of a container's i-th image volume.
func volumeLease(id string, i int) string { return id + "/volume/" + strconv.Itoa(i) }

// imageVolumes mounts the images that cfg's mounts name and returns a copy
// of cfg whose mounts bind them (read-only) instead; rec.Mounts learn the
// image IDs. Each step is added to u.
func (m *Manager) imageVolumes(ctx context.Context, rec *Record, pod *Pod, cfg *runtimeapi.ContainerConfig, u *undo) (*runtimeapi.ContainerConfig, error) {
	has := false
	for _, mnt := range cfg.GetMounts() {
		has = has || mnt.GetImage().GetImage() != ""
	}
	if !has {
		return cfg, nil
	}
	c := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	for i, mnt := range c.Mounts {
		ref := mnt.GetImage().GetImage()
		if ref == "" {
			continue
		}
		img, err := m.opts.Images.Resolve(ctx, ref)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, fmt.Errorf("image %q of the volume at %s not found (pull it first): %w", ref, mnt.GetContainerPath(), errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("resolve image %q of the volume at %s: %w", ref, mnt.GetContainerPath(), err)
		}
		lease := volumeLease(rec.ID, i)
		if err := m.opts.Images.AddUser(img.ID, lease); err != nil {
			return nil, fmt.Errorf("lease image %s: %w", img.ID, err)
		}
		u.add(func() {
			if derr := m.opts.Images.RemoveUser(lease); derr != nil {
				klog.ErrorS(derr, "Undo create: release volume image", "container", rec.ID)
			}
		})
		dir := filepath.Join(rec.StateDir, volumesDir, strconv.Itoa(i))
		scratch := filepath.Join(rec.LayerDir, volumesDir, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("image volume at %s: %w", mnt.GetContainerPath(), err)
		}
		// Undone by removeDirs, with the state dir.
		// Id-mapped through its layers, like the rootfs: the bind of
		// the overlay below cannot be.
		err = rootfs.Mount(dir, withIDMap(rootfs.Layers{
			Lower: img.LayerDirs, Upper: filepath.Join(scratch, "upper"), Work: filepath.Join(scratch, "work"),
		}, pod))
		if err != nil {
			return nil, fmt.Errorf("image volume at %s: %w", mnt.GetContainerPath(), err)
		}
		src, err := subPathIn(dir, mnt.GetImageSubPath())
		if err != nil {
			return nil, fmt.Errorf("image volume at %s of %s: %w", mnt.GetContainerPath(), ref, err)
		}
		rec.Mounts[i].ImageID = img.ID
		c.Mounts[i] = &runtimeapi.Mount{
			ContainerPath: mnt.GetContainerPath(), HostPath: src, Readonly: true,
			RecursiveReadOnly: mnt.GetRecursiveReadOnly(), SelinuxRelabel: mnt.GetSelinuxRelabel(),
		}
	}
	return c, nil
}

// subPathIn resolves sub inside dir without leaving it (a symlink in the
// image cannot point the bind at the node's files) and returns its real
// path.
func subPathIn(dir, sub string) (string, error) {
	if sub == "" {
		return dir, nil
	}
	if !filepath.IsLocal(sub) {
		return "", fmt.Errorf("%w: sub path %q leaves the image", errdefs.ErrInvalidArgument, sub)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	f, err := root.Open(sub)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: sub path %q does not exist in the image", errdefs.ErrInvalidArgument, sub)
	}
	if err != nil {
		return "", fmt.Errorf("%w: sub path %q: %v", errdefs.ErrInvalidArgument, sub, err)
	}
	defer f.Close()
	real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return "", err
	}
	if real != dir && !strings.HasPrefix(real, dir+"/") {
		return "", fmt.Errorf("%w: sub path %q resolves outside the image", errdefs.ErrInvalidArgument, sub)
	}
	return real, nil
}

// unmountVolumes unmounts the image volumes of a state dir.
func unmountVolumes(stateDir string) error {
	entries, err := os.ReadDir(filepath.Join(stateDir, volumesDir))
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if err := rootfs.Unmount(filepath.Join(stateDir, volumesDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// releaseVolumes drops the image leases of a record's image volumes.
func (m *Manager) releaseVolumes(rec *Record) error {
	for i, mnt := range rec.Mounts {
		if mnt.Image == "" {
			continue
		}
		if err := m.opts.Images.RemoveUser(volumeLease(rec.ID, i)); err != nil {
			return err
		}
	}
	return nil
}
