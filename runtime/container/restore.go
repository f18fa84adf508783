package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/runtime/checkpoint"
)

// restoreSource is the checkpoint archive a CreateContainer names as its
// image (as CRI-O and containerd accept): the container is made from the
// checkpoint's image, command and environment, its rootfs gets the
// checkpoint's changes, and StartContainer restores its processes.
type restoreSource struct {
	archive string
	criu    string
	// images is CRIU's images dir once unpacked (prepare).
	images string
}

// restoreDir, in the container's layer dir, holds the unpacked archive.
const restoreDir = "restore"

// checkpointSource returns, for a config whose image is a checkpoint
// archive, the config to create instead and the restore to do; nil and
// cfg itself otherwise. The archive is a node file a request names: it is
// opened without following a symlink. Restoring runs the archive's
// processes as they were dumped: archives are trusted as images are.
func (m *Manager) checkpointSource(ctx context.Context, cfg *runtimeapi.ContainerConfig) (*restoreSource, *runtimeapi.ContainerConfig, error) {
	ref := cfg.GetImage().GetImage()
	if !checkpoint.IsArchiveRef(ref) {
		return nil, cfg, nil
	}
	f, err := checkpoint.OpenArchive(ref)
	if err != nil {
		return nil, nil, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	meta, spec, err := checkpoint.ReadMeta(f)
	if err != nil {
		return nil, nil, fmt.Errorf("restore from %s: %w", ref, err)
	}
	if spec.Process.Terminal {
		return nil, nil, fmt.Errorf("restore from %s: restoring a container with a terminal is not supported: %w", ref, errdefs.ErrFailedPrecondition)
	}
	criu, err := checkpoint.Check(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("restore: %w", err)
	}
	image := meta.RootfsImageName
	if image == "" {
		image = meta.RootfsImageRef
	}
	if image == "" {
		return nil, nil, fmt.Errorf("restore from %s: config.dump names no image: %w", ref, errdefs.ErrInvalidArgument)
	}
	out := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	out.Image = &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: meta.RootfsImage}
	out.Command, out.Args, out.WorkingDir = spec.Process.Args, nil, spec.Process.Cwd
	out.Tty, out.Stdin, out.StdinOnce = false, false, false
	out.Envs = nil
	for _, kv := range spec.Process.Env {
		k, v, _ := strings.Cut(kv, "=")
		out.Envs = append(out.Envs, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
	}
	if strings.ContainsRune(strings.Join(append(append([]string{}, spec.Process.Args...), spec.Process.Env...), ""), 0) {
		return nil, nil, fmt.Errorf("restore from %s: spec.dump's command or environment holds a NUL: %w", ref, errdefs.ErrInvalidArgument)
	}
	return &restoreSource{archive: ref, criu: criu}, out, nil
}

// prepare unpacks the archive into the container's layer dir and applies
// its rootfs changes to the mounted rootfs (before any process of the
// container exists).
func (r *restoreSource) prepare(layerDir, rootfs string) error {
	if r == nil {
		return nil
	}
	f, err := checkpoint.OpenArchive(r.archive)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	dir := filepath.Join(layerDir, restoreDir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := checkpoint.Unpack(f, dir); err != nil {
		return fmt.Errorf("restore from %s: %w", r.archive, err)
	}
	if err := checkpoint.ApplyRootfsDiff(dir, rootfs); err != nil {
		return fmt.Errorf("restore from %s: %w", r.archive, err)
	}
	r.images = filepath.Join(dir, metadata.CheckpointDirectory)
	return nil
}

// imagesDir and criuPath are the shim's restore args (empty: no restore).
func (r *restoreSource) imagesDir() string {
	if r == nil {
		return ""
	}
	return r.images
}

func (r *restoreSource) criuPath() string {
	if r == nil {
		return ""
	}
	return r.criu
}
