package main

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// listenUnix listens on a unix socket at the relative path name. Unlike
// net.Listen it does not read /proc/sys/net/core/somaxconn, for which the
// net package allocates a 64 KB buffer that would stay in every shim.
func listenUnix(name string) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		return nil, fmt.Errorf("bind %s: %w", name, err)
	}
	// berthd is the only client, with a few connections at a time.
	if err := unix.Listen(fd, 128); err != nil {
		return nil, fmt.Errorf("listen %s: %w", name, err)
	}
	return net.FileListener(f)
}
