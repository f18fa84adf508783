package containerinit

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/userns"
)

// MountFDsEnv names the variable that lists the mount sources opened for
// the init: "index:fd,...", index into spec.Mounts.
const MountFDsEnv = "_BERTH_MOUNT_FDS"

// MountSources opens, for a container that joins a user namespace, the
// source of every bind mount as a detached copy (open_tree), id-mapped
// through the namespace when the mount asks for it: by the time the init
// mounts it is the namespace's root, which may not reach the node's paths
// (the kubelet's volume dirs are 0750 root) and may not id-map a mount of
// the node's file systems. A source whose file system cannot be id-mapped
// is bound as it is (its files show as the overflow id). Other containers
// get nothing: their init binds by path. The caller closes the files.
func MountSources(spec *specs.Spec) (files []*os.File, index []int, err error) {
	var nsPath string
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			nsPath = ns.Path
		}
	}
	for _, m := range spec.Mounts {
		if (len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0) && nsPath == "" {
			return nil, nil, fmt.Errorf("mount at %s is id-mapped, but the container joins no user namespace", m.Destination)
		}
	}
	if nsPath == "" {
		return nil, nil, nil
	}
	nsFile, err := os.Open(nsPath)
	if err != nil {
		return nil, nil, err
	}
	defer nsFile.Close()
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			files, index = nil, nil
		}
	}()
	for i, m := range spec.Mounts {
		o := parseMountOptions(m.Options)
		if m.Type != "bind" && !o.bind {
			continue
		}
		recursive := o.flags&unix.MS_REC != 0
		f, err := openSource(m, spec, int(nsFile.Fd()), recursive)
		if err != nil {
			return files, index, fmt.Errorf("mount at %s: %w", m.Destination, err)
		}
		files = append(files, f)
		index = append(index, i)
	}
	return files, index, nil
}

func openSource(m specs.Mount, spec *specs.Spec, nsFD int, recursive bool) (*os.File, error) {
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		if !slices.Equal(m.UIDMappings, spec.Linux.UIDMappings) || !slices.Equal(m.GIDMappings, spec.Linux.GIDMappings) {
			return nil, errors.New("only the maps of the container's user namespace are supported")
		}
		f, err := userns.IDMapped(m.Source, nsFD, recursive, false)
		if !errors.Is(err, errors.ErrUnsupported) {
			return f, err
		}
	}
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, m.Source, flags)
	if err != nil {
		return nil, fmt.Errorf("clone mount of %s: %w", m.Source, err)
	}
	return os.NewFile(uintptr(fd), "mount:"+m.Source), nil
}

// mountFDs reads MountFDsEnv: mount index → fd.
func mountFDs() (map[int]int, error) {
	s := os.Getenv(MountFDsEnv)
	if s == "" {
		return nil, nil
	}
	out := map[int]int{}
	for _, e := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(e, ":")
		i, err1 := strconv.Atoi(a)
		fd, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || fd < 3 {
			return nil, fmt.Errorf("bad %s %q", MountFDsEnv, s)
		}
		out[i] = fd
	}
	return out, nil
}
