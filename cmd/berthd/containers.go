package main

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/imageservice"
	"github.com/berth-dev/berth/runtime/cdi"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/events"
	"github.com/berth-dev/berth/runtime/spec"
	"github.com/berth-dev/berth/sandbox"
)

// newContainerManager runs containers in the pods of pods with the images
// of images, and takes part in the pods' stop and removal.
func newContainerManager(cfg Config, db *bolt.DB, pods *sandbox.Manager, images *imageservice.Service, bus *events.Bus, devices *cdi.Registry) (*container.Manager, error) {
	m, err := container.New(container.Options{
		DB:              db,
		Root:            cfg.Root,
		State:           cfg.State,
		Pods:            podSource{pods},
		Images:          imageSource{images},
		CgroupNamespace: cgroups.Unified(),
		SeccompDefault:  cfg.SeccompDefault,
		Events:          bus,
		CDI:             devices,
		HoldCleanup:     cfg.hooks.holdCleanup,

		StatsCollectPeriod: cfg.statsCollectPeriod(),
	})
	if err != nil {
		return nil, err
	}
	pods.SetHooks(sandbox.Hooks{StopContainers: m.StopPod, RemoveContainers: m.RemovePod})
	return m, nil
}

// podSource shows the container manager the part of a pod it needs.
type podSource struct{ m *sandbox.Manager }

func (p podSource) Pod(id string) (*container.Pod, error) {
	st, err := p.m.Status(id)
	if err != nil {
		return nil, err
	}
	return &container.Pod{
		ID:       st.ID,
		Ready:    st.Ready,
		StateDir: st.StateDir,
		Namespaces: spec.Namespaces{
			Net: st.NetNS, IPC: st.IPCNS, UTS: st.UTSNS, PID: st.PIDNS,
			User: st.UserNS, UserMapping: st.Config.UserNS,
		},
		Files: spec.PodFiles{
			Hostname: st.HostnamePath(), Hosts: st.HostsPath(), ResolvConf: st.ResolvConfPath(), Shm: st.ShmPath,
		},
		Cgroup:       st.Cgroup,
		LogDirectory: st.Config.LogDirectory,
		Sysctls:      st.Config.Sysctls,
		Privileged:   st.Config.Privileged,
	}, nil
}

// imageSource shows the container manager the part of an image it needs.
type imageSource struct{ s *imageservice.Service }

func (i imageSource) Resolve(ctx context.Context, ref string) (*container.Image, error) {
	img, err := i.s.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &container.Image{
		ID: img.ID, RepoTags: img.RepoTags, RepoDigests: img.RepoDigests,
		Config: img.Config, LayerDirs: img.LayerDirs,
	}, nil
}

func (i imageSource) AddUser(imageID, user string) error { return i.s.AddUser(imageID, user) }
func (i imageSource) AddUserWith(imageID, user string, with func(tx *bolt.Tx) error) error {
	return i.s.AddUserWith(imageID, user, with)
}
func (i imageSource) RemoveUser(user string) error { return i.s.RemoveUser(user) }
