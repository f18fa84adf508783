// Command nriplugin is the NRI plugin berth's integration tests connect
// to berthd, built on NRI's own plugin stub (github.com/containerd/nri
// pkg/stub, the library NRI's sample plugins are made with; those samples
// are modules of their own that the module proxy does not serve). What it
// does to a container is chosen by the container's berth.test/nri
// annotation:
//
//	adjust   env, a bind mount, a device, an rlimit, OOM score, memory limit
//	fail     refuses the create
//	invalid  adjusts a device outside /dev
//	hooks    adds createRuntime, createContainer, poststart and poststop
//	         hooks that keep their state in mount-src/<kind>.json
//	ctrhooks adds a createContainer hook that fails
//	hang     never answers the create
//	crash    exits while answering the create
//	update   after the start, raises the container's memory limit unasked
//
// Each event it sees is printed as one "event <name> <container name>" line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

const (
	modeKey = "berth.test/nri"
	// updatedLimit is the memory limit mode update sets.
	updatedLimit = 96 << 20
)

type plugin struct {
	stub     stub.Stub
	mountSrc string
}

func main() {
	socket := flag.String("socket", "", "NRI socket")
	name := flag.String("name", "berthtest", "plugin name")
	idx := flag.String("idx", "50", "plugin index")
	mountSrc := flag.String("mount-src", "/tmp", "host dir mode adjust binds at /nri-mnt")
	flag.Parse()
	p := &plugin{mountSrc: *mountSrc}
	s, err := stub.New(p, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p.stub = s
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "plugin stopped:", err)
		os.Exit(1)
	}
}

func event(what string, c *api.Container) {
	fmt.Printf("event %s %s\n", what, c.GetName())
}

func (p *plugin) Synchronize(_ context.Context, _ []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	fmt.Printf("synchronized %d containers\n", len(ctrs))
	return nil, nil
}

func (p *plugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	event("CreateContainer", c)
	a := &api.ContainerAdjustment{}
	switch c.GetAnnotations()[modeKey] {
	case "adjust":
		a.AddEnv("NRI_INJECTED", "by-berthtest")
		a.AddMount(&api.Mount{Destination: "/nri-mnt", Source: p.mountSrc, Type: "bind", Options: []string{"rbind", "ro"}})
		a.AddDevice(&api.LinuxDevice{Path: "/dev/nri-null", Type: "c", Major: 1, Minor: 3, FileMode: api.FileMode(0o666)})
		a.AddRlimit("RLIMIT_NOFILE", 2222, 1111)
		oom := 321
		a.SetLinuxOomScoreAdj(&oom)
		a.SetLinuxMemoryLimit(64 << 20)
	case "fail":
		return nil, nil, errors.New("berthtest refuses this container")
	case "invalid":
		a.AddDevice(&api.LinuxDevice{Path: "/etc/not-a-device", Type: "c", Major: 1, Minor: 3})
	case "hooks":
		// Each hook keeps the state it was given in the mount-src dir.
		a.AddHooks(&api.Hooks{
			CreateRuntime: []*api.Hook{stateHook(p.mountSrc, "createRuntime")},
			// Run in the container's mount namespace before pivot_root:
			// the node's paths still resolve.
			CreateContainer: []*api.Hook{stateHook(p.mountSrc, "createContainer")},
			Poststart:       []*api.Hook{stateHook(p.mountSrc, "poststart")},
			Poststop:        []*api.Hook{stateHook(p.mountSrc, "poststop")},
		})
	case "ctrhooks":
		a.AddHooks(&api.Hooks{CreateContainer: []*api.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo no such device >&2; exit 1"}}}})
	case "hang":
		time.Sleep(time.Hour)
	case "crash":
		fmt.Println("crashing")
		os.Exit(3)
	}
	return a, nil, nil
}

func stateHook(dir, kind string) *api.Hook {
	return &api.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + dir + "/" + kind + ".json"}}
}

func (p *plugin) PostStartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	event("PostStartContainer", c)
	if c.GetAnnotations()[modeKey] != "update" {
		return nil
	}
	id := c.GetId()
	go func() {
		u := &api.ContainerUpdate{ContainerId: id}
		u.SetLinuxMemoryLimit(updatedLimit)
		failed, err := p.stub.UpdateContainers([]*api.ContainerUpdate{u})
		fmt.Printf("updated %s: failed %d, err %v\n", c.GetName(), len(failed), err)
	}()
	return nil
}

func (p *plugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	event("StartContainer", c)
	return nil
}

func (p *plugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	event("StopContainer", c)
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	event("RemoveContainer", c)
	return nil
}
