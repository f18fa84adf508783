// Package cni sets up pod networking through CNI plugins.
package cni

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
