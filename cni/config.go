// Package cni sets up pod networking through CNI plugins (libcni): it loads
// the network config, runs ADD and DEL with the Kubernetes arguments and
// capabilities, keeps libcni's cache (results and configs, so DEL works after
// a restart and after the config changed) in its own dir, and turns results
// into pod IPs.
package cni

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/containernetworking/cni/libcni"
)

// configExtensions are the file types libcni loads network configs from.
var configExtensions = map[string]bool{".conf": true, ".conflist": true, ".json": true}

// FindNetworkConfig returns the first network config file (in lexical order)
// of dir, as the kubelet and other runtimes choose it.
func FindNetworkConfig(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("read CNI config dir %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && configExtensions[filepath.Ext(e.Name())] {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no network config found in %s", dir)
	}
	sort.Strings(names)
	return filepath.Join(dir, names[0]), nil
}

// LoadNetwork reads the first network config of dir as a plugin list; a
// single-plugin .conf file becomes a list of one.
func LoadNetwork(dir string) (*libcni.NetworkConfigList, error) {
	path, err := FindNetworkConfig(dir)
	if err != nil {
		return nil, err
	}
	if filepath.Ext(path) == ".conflist" {
		list, err := libcni.ConfListFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("load CNI config %s: %w", path, err)
		}
		return list, nil
	}
	conf, err := libcni.ConfFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load CNI config %s: %w", path, err)
	}
	if conf.Network.Type == "" {
		// A list in a .conf or .json file.
		list, err := libcni.ConfListFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("load CNI config %s: %w", path, err)
		}
		return list, nil
	}
	list, err := libcni.ConfListFromConf(conf)
	if err != nil {
		return nil, fmt.Errorf("load CNI config %s: %w", path, err)
	}
	return list, nil
}
