package filter

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Program is a compiled filter: what seccomp(2) loads. Compiling the
// runtime/default profile for x86_64 with its x86 and x32 sub-arches takes
// libseccomp 2.5 about 0.1 s on a small node, so a program is compiled once
// and handed to each container init and exec (Cache, File), which then
// loads it with one system call.
type Program struct {
	// Flags are SECCOMP_FILTER_FLAG_* for seccomp(2).
	Flags uint
	// Filter is the classic BPF program.
	Filter []unix.SockFilter
}

// Compile turns p into a program with libseccomp.
func Compile(p *specs.LinuxSeccomp) (*Program, error) {
	f, err := Build(p)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	mem, err := unix.MemfdCreate("seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: memfd: %w", err)
	}
	out := os.NewFile(uintptr(mem), "seccomp-bpf")
	defer out.Close()
	if err := f.ExportBPF(out); err != nil {
		return nil, fmt.Errorf("seccomp: export filter: %w", err)
	}
	raw, err := io.ReadAll(io.NewSectionReader(out, 0, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("seccomp: read filter: %w", err)
	}
	const insn = int(unsafe.Sizeof(unix.SockFilter{}))
	if len(raw) == 0 || len(raw)%insn != 0 {
		return nil, fmt.Errorf("seccomp: libseccomp exported %d bytes, not a BPF program", len(raw))
	}
	prog := &Program{Flags: unix.SECCOMP_FILTER_FLAG_TSYNC}
	for _, fl := range p.Flags {
		switch fl {
		case specs.LinuxSeccompFlagLog:
			prog.Flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			prog.Flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		}
	}
	// ExportBPF writes the program in host byte order, as the kernel reads it.
	prog.Filter = make([]unix.SockFilter, len(raw)/insn)
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, prog.Filter); err != nil {
		return nil, fmt.Errorf("seccomp: decode filter: %w", err)
	}
	prog.Filter = append(allowNewer(p), prog.Filter...)
	return prog, nil
}

// allowNewer is a program prefix that allows, on the native architecture,
// the syscalls p allows unconditionally that libseccomp cannot name (it
// skipped them): without it, runtime/default would refuse mseal, statmount
// or uretprobe (which uprobe trampolines call) with EPERM on kernels newer
// than the node's libseccomp. The prefix falls through to libseccomp's
// program, which starts by loading the architecture itself.
func allowNewer(p *specs.LinuxSeccomp) []unix.SockFilter {
	if p.DefaultAction == specs.ActAllow || nativeArch == 0 {
		return nil
	}
	var nrs []uint32
	seen := map[uint32]bool{}
	for _, s := range p.Syscalls {
		if s.Action != specs.ActAllow || len(s.Args) != 0 {
			continue
		}
		for _, name := range s.Names {
			nr, ok := newerSyscalls[name]
			if !ok || seen[nr] {
				continue
			}
			if _, err := libseccomp.GetSyscallFromName(name); err == nil {
				continue // libseccomp knows it: its own rule applies
			}
			seen[nr] = true
			nrs = append(nrs, nr)
		}
	}
	if len(nrs) == 0 || len(nrs) > 200 {
		return nil
	}
	const (
		archOffset = 4 // offsetof(struct seccomp_data, arch)
		nrOffset   = 0
	)
	n := uint8(len(nrs))
	out := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: archOffset},
		// Another architecture: on to libseccomp's program, past the
		// number loads and checks, the jump and the return below.
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nativeArch, Jt: 0, Jf: n + 3},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: nrOffset},
	}
	for i, nr := range nrs {
		// A match jumps to the return: past the other checks and the jump.
		out = append(out, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: n - uint8(i), Jf: 0})
	}
	return append(out,
		unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: 1},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	)
}

// Load installs the program on every thread of the calling process. As
// with Load, no_new_privs or CAP_SYS_ADMIN is the caller's business.
func (p *Program) Load() error {
	if len(p.Filter) == 0 || len(p.Filter) > 0xffff {
		return fmt.Errorf("seccomp: a program of %d instructions", len(p.Filter))
	}
	fprog := unix.SockFprog{Len: uint16(len(p.Filter)), Filter: &p.Filter[0]}
	r, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(p.Flags), uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("load seccomp filter: %w", errno)
	}
	if r != 0 {
		// With TSYNC, the thread that could not take the filter.
		return fmt.Errorf("load seccomp filter: thread %d cannot be synchronised", r)
	}
	return nil
}

// magic starts an encoded program (version 1).
var magic = [8]byte{'b', 'e', 'r', 't', 'h', 'b', 'p', '1'}

const insnSize = 8 // code uint16, jt uint8, jf uint8, k uint32

// MarshalBinary encodes the program: magic, flags, instruction count,
// instructions, all little-endian.
func (p *Program) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, len(magic)+8+insnSize*len(p.Filter))
	b = append(b, magic[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(p.Flags))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Filter)))
	for _, in := range p.Filter {
		b = binary.LittleEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.LittleEndian.AppendUint32(b, in.K)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary made.
func (p *Program) UnmarshalBinary(data []byte) error {
	head := len(magic) + 8
	if len(data) < head || !bytes.Equal(data[:len(magic)], magic[:]) {
		return errors.New("seccomp: not an encoded filter program")
	}
	flags := binary.LittleEndian.Uint32(data[len(magic):])
	n := int(binary.LittleEndian.Uint32(data[len(magic)+4:]))
	body := data[head:]
	if n == 0 || len(body) != n*insnSize {
		return fmt.Errorf("seccomp: encoded program of %d instructions has %d bytes", n, len(body))
	}
	p.Flags = uint(flags)
	p.Filter = make([]unix.SockFilter, n)
	for i := range p.Filter {
		in := body[i*insnSize:]
		p.Filter[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(in), Jt: in[2], Jf: in[3], K: binary.LittleEndian.Uint32(in[4:])}
	}
	return nil
}

// Cache compiles each distinct profile once. The zero value is ready.
type Cache struct {
	mu    sync.Mutex
	progs map[[sha256.Size]byte]cached
}

type cached struct {
	prog    *Program
	encoded []byte
}

// Program returns p compiled, from the cache when the same profile was
// compiled before.
func (c *Cache) Program(p *specs.LinuxSeccomp) (*Program, error) {
	e, err := c.get(p)
	return e.prog, err
}

func (c *Cache) get(p *specs.LinuxSeccomp) (cached, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return cached{}, err
	}
	key := sha256.Sum256(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.progs[key]; ok {
		return e, nil
	}
	prog, err := Compile(p)
	if err != nil {
		return cached{}, err
	}
	encoded, _ := prog.MarshalBinary()
	if c.progs == nil {
		c.progs = map[[sha256.Size]byte]cached{}
	}
	e := cached{prog: prog, encoded: encoded}
	c.progs[key] = e
	return e, nil
}

// BundleFile is the name of the compiled program (MarshalBinary) that
// berthd writes next to a container's config.json: compiled once per node
// and profile there, the pod's shim needs no libseccomp (whose allocations
// would stay in each shim's memory, about 1.1 MB) and no 0.1 s per pod.
const BundleFile = "seccomp.bpf"

// Encoded returns p compiled and encoded (MarshalBinary), from c.
func (c *Cache) Encoded(p *specs.LinuxSeccomp) ([]byte, error) {
	e, err := c.get(p)
	return e.encoded, err
}

// File returns an unlinked file holding p compiled (from c), to
// hand to a container init as an inherited file; the caller closes it.
func (c *Cache) File(p *specs.LinuxSeccomp) (*os.File, error) {
	e, err := c.get(p)
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("berth-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "berth-seccomp")
	if _, err := f.Write(e.encoded); err != nil {
		f.Close()
		return nil, fmt.Errorf("seccomp: write program: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadProgram reads an encoded program from f (the init's inherited file).
func ReadProgram(f *os.File) (*Program, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<24))
	if err != nil {
		return nil, fmt.Errorf("seccomp: read program: %w", err)
	}
	var p Program
	if err := p.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	return &p, nil
}
