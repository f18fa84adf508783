package cgroups

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	systemd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/cgroupfs"
)

// DefaultSlice holds the pods that name no slice as CgroupParent.
const DefaultSlice = "berth.slice"

// unitTimeout bounds a start or stop job of systemd.
const unitTimeout = 30 * time.Second

// Systemd is the systemd cgroup driver. A pod is a transient scope,
// berth-<pod id>.scope, in the slice the kubelet names as CgroupParent,
// with the pod's limits as unit properties and Delegate=yes: berth makes the
// containers' cgroups inside it itself (as runtime/cgroupfs expects), so
// systemd never removes a container's cgroup before its shim has read the
// exit and the OOM kills, and a container needs no D-Bus call. Stopping the
// scope kills what is left of the pod.
type Systemd struct {
	mu   sync.Mutex
	conn *systemd.Conn
}

// NewSystemd connects to systemd, or says why the driver cannot work here.
func NewSystemd(ctx context.Context) (*Systemd, error) {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		return nil, errors.New("cgroup driver systemd: systemd is not running on this node (no /run/systemd/system); use --cgroup-driver cgroupfs")
	}
	conn, err := systemd.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("cgroup driver systemd: cannot reach systemd over D-Bus: %w", err)
	}
	return &Systemd{conn: conn}, nil
}

// Close ends the D-Bus connection.
func (s *Systemd) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *Systemd) Driver() string { return "systemd" }

// PodCgroup is <parent slice path>/berth-<pod id>.scope; parent is a slice
// name or a path ending in one.
func (s *Systemd) PodCgroup(parent, podID string) (string, error) {
	return systemdPodCgroup(parent, podID)
}

func systemdPodCgroup(parent, podID string) (string, error) {
	if err := CheckParent(parent); err != nil {
		return "", err
	}
	if parent == "" {
		parent = DefaultSlice
	}
	// A slice's path ("/test.slice", critest's; ".../kubepods-pod1.slice")
	// names its last slice, as containerd reads it.
	if b := path.Base(parent); strings.Contains(parent, "/") && strings.HasSuffix(b, ".slice") {
		parent = b
	}
	p, err := ExpandSlice(parent)
	if err != nil {
		return "", fmt.Errorf("cgroup parent under the systemd driver: %w", err)
	}
	return path.Join(p, "berth-"+podID+".scope"), nil
}

// unitOf is the scope a pod cgroup path names, and its slice.
func unitOf(p string) (unit, slice string, err error) {
	unit, slice = path.Base(p), path.Base(path.Dir(p))
	if !strings.HasSuffix(unit, ".scope") || !strings.HasSuffix(slice, ".slice") && path.Dir(p) != "/" {
		return "", "", fmt.Errorf("cgroup %s is no systemd scope in a slice", p)
	}
	if path.Dir(p) == "/" {
		slice = "-.slice"
	}
	return unit, slice, nil
}

// CreatePod checks the path; the scope itself starts in place, when its
// first process (the shim) exists: systemd refuses a scope without one.
func (s *Systemd) CreatePod(p string, res *specs.LinuxResources) (func(pid int) error, error) {
	unit, slice, err := unitOf(p)
	if err != nil {
		return nil, err
	}
	props := UnitProperties(res, Unified())
	place := func(pid int) error {
		all := append([]systemd.Property{
			systemd.PropDescription("berth pod " + unit),
			systemd.PropSlice(slice),
			systemd.PropPids(uint32(pid)),
			unitProperty("Delegate", true),
			unitProperty("DefaultDependencies", false),
		}, props...)
		if err := s.start(unit, all); err != nil {
			return fmt.Errorf("start pod scope %s: %w", unit, err)
		}
		// What systemd cannot express (cpusets on v1) goes to the files.
		if !Unified() && res != nil && res.CPU != nil && (res.CPU.Cpus != "" || res.CPU.Mems != "") {
			if cg, err := Load(p); err == nil {
				if err := cg.Update(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: res.CPU.Cpus, Mems: res.CPU.Mems}}); err != nil {
					return err
				}
			}
		}
		// The leaf goes in every hierarchy systemd made the scope in.
		for _, d := range scopeDirs(p) {
			if err := os.Mkdir(filepath.Join(d, ShimLeaf), 0o755); err != nil && !os.IsExist(err) {
				return fmt.Errorf("make shim cgroup of %s: %w", unit, err)
			}
		}
		g, err := cgroupfs.Open(path.Join(p, ShimLeaf))
		if err != nil {
			return err
		}
		return g.AddProc(pid)
	}
	return place, nil
}

// scopeDirs are the scope's directories: the unified one, or one per v1
// hierarchy that has it.
func scopeDirs(p string) []string {
	if Unified() {
		return []string{filepath.Join(Root, p)}
	}
	var out []string
	entries, _ := os.ReadDir(Root)
	for _, e := range entries {
		d := filepath.Join(Root, e.Name(), p)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// UpdatePod sets the scope's unit properties to the new limits (systemd
// writes the cgroup files and keeps them across a daemon-reload); the
// cpusets systemd cannot express on v1 go to the files, as at CreatePod.
func (s *Systemd) UpdatePod(p string, res *specs.LinuxResources) error {
	unit, _, err := unitOf(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), unitTimeout)
	defer cancel()
	conn, err := s.client(ctx)
	if err != nil {
		return err
	}
	if err := conn.SetUnitPropertiesContext(ctx, unit, true, UnitProperties(res, Unified())...); err != nil {
		return fmt.Errorf("set limits of pod scope %s: %w", unit, err)
	}
	if !Unified() && res != nil && res.CPU != nil && (res.CPU.Cpus != "" || res.CPU.Mems != "") {
		cg, err := Load(p)
		if err != nil {
			return err
		}
		return cg.Update(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: res.CPU.Cpus, Mems: res.CPU.Mems}})
	}
	return nil
}

// DeletePod stops the pod's scope (systemd kills what is left and removes
// its cgroup) and removes what systemd left of the cgroup tree.
func (s *Systemd) DeletePod(p string) error {
	unit, _, err := unitOf(p)
	if err != nil {
		return err
	}
	if err := s.stop(unit); err != nil {
		return fmt.Errorf("stop pod scope %s: %w", unit, err)
	}
	g, err := cgroupfs.Open(p)
	if err != nil {
		return err
	}
	if g.Exists() {
		_ = g.KillAll()
		if err := g.Remove(5 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// UnitProperties are the unit properties of the limits systemd can set:
// CPU weight (shares on v1), quota and period, memory and pids limits,
// CPU and memory node sets (v2 only), with accounting on so that systemd
// keeps the controllers enabled for the unit.
func UnitProperties(res *specs.LinuxResources, unified bool) []systemd.Property {
	props := []systemd.Property{
		unitProperty("CPUAccounting", true),
		unitProperty("MemoryAccounting", true),
		unitProperty("TasksAccounting", true),
		unitProperty("IOAccounting", true),
	}
	if res == nil {
		return props
	}
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares > 0 {
			if unified {
				props = append(props, unitProperty("CPUWeight", CPUWeight(*c.Shares)))
			} else {
				props = append(props, unitProperty("CPUShares", *c.Shares))
			}
		}
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			props = append(props,
				unitProperty("CPUQuotaPeriodUSec", period),
				unitProperty("CPUQuotaPerSecUSec", QuotaPerSecUSec(*c.Quota, period)))
		}
		if unified && c.Cpus != "" {
			if bits, err := CPUSetBits(c.Cpus); err == nil {
				props = append(props, unitProperty("AllowedCPUs", bits))
			}
		}
		if unified && c.Mems != "" {
			if bits, err := CPUSetBits(c.Mems); err == nil {
				props = append(props, unitProperty("AllowedMemoryNodes", bits))
			}
		}
	}
	if m := res.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		name := "MemoryMax"
		if !unified {
			name = "MemoryLimit"
		}
		props = append(props, unitProperty(name, uint64(*m.Limit)))
	}
	if p := res.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		props = append(props, unitProperty("TasksMax", uint64(*p.Limit)))
	}
	return props
}

func unitProperty(name string, v any) systemd.Property {
	return systemd.Property{Name: name, Value: godbus.MakeVariant(v)}
}

// CPUWeight converts CPU shares into a cgroup v2 weight as the containers'
// cgroups get it (the kubelet's linear conversion, v2.go).
func CPUWeight(shares uint64) uint64 { return kubeletWeight(shares) }

// QuotaPerSecUSec is a CFS quota per period as systemd's CPU time per
// second. systemd keeps it as a percentage, so it is rounded up to the next
// 10ms: the cgroup then allows at least the quota asked for.
func QuotaPerSecUSec(quota int64, period uint64) uint64 {
	if quota <= 0 || period == 0 {
		return math.MaxUint64
	}
	v := uint64(quota) * 1000000 / period
	if v%10000 != 0 {
		v = (v/10000 + 1) * 10000
	}
	return v
}

// CPUSetBits turns a cpuset list ("0-2,4") into systemd's bitmask: byte i
// holds CPUs 8i..8i+7, lowest bit first.
func CPUSetBits(list string) ([]byte, error) {
	var bits big.Int
	for _, r := range strings.Split(list, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("cpuset %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, fmt.Errorf("cpuset %q: %w", list, err)
			}
		}
		if b < a {
			return nil, fmt.Errorf("cpuset %q: range %s is backwards", list, r)
		}
		for i := a; i <= b; i++ {
			bits.SetBit(&bits, int(i), 1)
		}
	}
	out := bits.Bytes() // big-endian
	for l, r := 0, len(out)-1; l < r; l, r = l+1, r-1 {
		out[l], out[r] = out[r], out[l]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cpuset %q is empty", list)
	}
	return out, nil
}

// client is the connection, made again when systemd restarted under us.
func (s *Systemd) client(ctx context.Context) (*systemd.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	if s.conn != nil {
		s.conn.Close()
	}
	conn, err := systemd.NewWithContext(ctx)
	if err != nil {
		s.conn = nil
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	s.conn = conn
	return conn, nil
}

func (s *Systemd) start(unit string, props []systemd.Property) error {
	ctx, cancel := context.WithTimeout(context.Background(), unitTimeout)
	defer cancel()
	conn, err := s.client(ctx)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, unit, "replace", props, done); err != nil {
		return err
	}
	return waitJob(ctx, unit, "start", done)
}

func (s *Systemd) stop(unit string) error {
	ctx, cancel := context.WithTimeout(context.Background(), unitTimeout)
	defer cancel()
	conn, err := s.client(ctx)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, unit, "replace", done); err != nil {
		if isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
			return nil
		}
		return err
	}
	if err := waitJob(ctx, unit, "stop", done); err != nil {
		return err
	}
	// A scope whose processes were killed is left "failed" and loaded.
	_ = conn.ResetFailedUnitContext(ctx, unit)
	return nil
}

func waitJob(ctx context.Context, unit, what string, done <-chan string) error {
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("%s job of %s: %s", what, unit, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s job of %s: %w", what, unit, ctx.Err())
	}
}

func isDBusError(err error, name string) bool {
	var e godbus.Error
	if errors.As(err, &e) {
		return e.Name == name
	}
	var pe *godbus.Error
	return errors.As(err, &pe) && pe.Name == name
}

// UnitCgroup is the cgroup path systemd reports for a unit ("" when it has
// none), to check that a pod's path is the one systemd made.
func (s *Systemd) UnitCgroup(unit string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), unitTimeout)
	defer cancel()
	conn, err := s.client(ctx)
	if err != nil {
		return "", err
	}
	typ := strings.TrimPrefix(path.Ext(unit), ".")
	p, err := conn.GetUnitTypePropertyContext(ctx, unit, strings.ToUpper(typ[:1])+typ[1:], "ControlGroup")
	if err != nil {
		return "", err
	}
	v, _ := p.Value.Value().(string)
	return v, nil
}
