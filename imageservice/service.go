package imageservice

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/singleflight"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/reference"
)

// DefaultProgressTimeout cancels a pull that received too little for this long.
const DefaultProgressTimeout = time.Minute

// Options configure a Service.
type Options struct {
	// Root is berthd's persistent root; images live under Root/images.
	Root string
	// DB is berthd's metadata database.
	DB *bolt.DB
	// RegistryConfigDir holds <host>/hosts.toml files, read at each pull.
	RegistryConfigDir string
	// PinnedImages are references whose images report Pinned.
	PinnedImages []string
	// ProgressTimeout cancels a pull that makes no progress for this long
	// (0: DefaultProgressTimeout).
	ProgressTimeout time.Duration
	// ContainerLayersDir, when set, is reported by FsInfo as the containers'
	// writable layer filesystem.
	ContainerLayersDir string
	// MaxParallelLayers bounds concurrent layer downloads of one pull (0: 4).
	MaxParallelLayers int
}

// Service is the image store and puller.
type Service struct {
	opts       Options
	db         *bolt.DB
	layersDir  string
	tmpDir     string
	pinnedRefs []string

	mu      sync.Mutex
	images  map[string]*record
	layers  map[string]*layerRecord
	users   map[string]*userRecord
	pending map[string]int // chain ID → pulls in progress that need it
	trash   []string       // removed layer dirs to delete once s.mu is released
	// fetching is the progress of the pull fetching a layer, by chain ID.
	fetching map[string]*progress

	flight singleflight.Group

	fsMu         sync.Mutex
	containersFs *FsUsage // last walk of ContainerLayersDir
}

const containerFsMaxAge = 5 * time.Second

// New opens the image store: it loads the records, and removes what an
// interrupted pull left on disk.
func New(opts Options) (*Service, error) {
	if opts.ProgressTimeout <= 0 {
		opts.ProgressTimeout = DefaultProgressTimeout
	}
	if opts.MaxParallelLayers <= 0 {
		opts.MaxParallelLayers = 4
	}
	s := &Service{
		opts:      opts,
		db:        opts.DB,
		layersDir: filepath.Join(opts.Root, "images", "layers"),
		tmpDir:    filepath.Join(opts.Root, "images", "tmp"),
		images:    map[string]*record{},
		layers:    map[string]*layerRecord{},
		users:     map[string]*userRecord{},
		pending:   map[string]int{},
		fetching:  map[string]*progress{},
	}
	for _, p := range opts.PinnedImages {
		r, err := reference.Parse(p)
		if err != nil {
			if _, ok := reference.IDPrefix(p); ok {
				s.pinnedRefs = append(s.pinnedRefs, p)
				continue
			}
			return nil, fmt.Errorf("pinned image: %w", err)
		}
		if r.Digest != "" {
			s.pinnedRefs = append(s.pinnedRefs, r.DigestRef())
		} else {
			s.pinnedRefs = append(s.pinnedRefs, r.TagRef())
		}
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("load image records: %w", err)
	}
	s.mu.Lock()
	defer s.unlock()
	if err := s.cleanDisk(); err != nil {
		return nil, fmt.Errorf("clean image store: %w", err)
	}
	return s, nil
}

// LayersDir is where unpacked layers live.
func (s *Service) LayersDir() string { return s.layersDir }

// FsUsage is the use of one filesystem.
type FsUsage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
	Timestamp  time.Time
}

// FsInfo reports the image store's use (from the layer records), and the
// containers' writable layers dir's use (walked) when it is configured.
func (s *Service) FsInfo() (images FsUsage, containers *FsUsage) {
	s.mu.Lock()
	images = FsUsage{Mountpoint: s.layersDir, Timestamp: time.Now()}
	for _, l := range s.layers {
		images.UsedBytes += uint64(l.Size)
		images.InodesUsed += uint64(l.Inodes)
	}
	s.mu.Unlock()
	if d := s.opts.ContainerLayersDir; d != "" {
		s.fsMu.Lock()
		defer s.fsMu.Unlock()
		// The kubelet asks every few seconds; walking every writable layer
		// that often would cost more than a slightly older answer.
		if s.containersFs != nil && time.Since(s.containersFs.Timestamp) < containerFsMaxAge {
			c := *s.containersFs
			return images, &c
		}
		c := FsUsage{Mountpoint: d}
		_ = filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			c.InodesUsed++
			if info, err := e.Info(); err == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					c.UsedBytes += uint64(st.Blocks) * 512
				}
			}
			return nil
		})
		c.Timestamp = time.Now()
		s.containersFs = &c
		containers = &c
	}
	return images, containers
}

// ensureDirs makes the store's dirs (they may have been removed under us).
func (s *Service) ensureDirs() error {
	for _, d := range []string{s.layersDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// noSpace names the image store's file system when err is a lack of space
// or quota there (errdefs.ErrResourceExhausted), so that a full disk does
// not read as the registry's failure.
func (s *Service) noSpace(err error) error {
	return errdefs.NoSpace(err, filepath.Join(s.opts.Root, "images"))
}

// dbNoSpace is noSpace for a write to the database, wherever it lives.
func (s *Service) dbNoSpace(err error) error {
	return errdefs.NoSpace(err, filepath.Dir(s.db.Path()))
}
