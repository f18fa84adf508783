//go:build !amd64 && !arm64

package filter

const nativeArch = 0

var newerSyscalls = map[string]uint32{}
