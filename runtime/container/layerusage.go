package container

import (
	"io/fs"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// A writable layer's use is a walk of its upper dir: a system call a file,
// which a stats list paid for every container on every call. As
// containerd's snapshot usage (computed every stats_collect_period, 10 s)
// and CRI-O do, the stats answer from the last walk and a walk older than
// layerTTL is redone in the background, off the call; only a layer's first
// stats wait for its walk. The kubelet reads these every 10 s or so for
// eviction, which tolerates that lag.
const layerTTL = 10 * time.Second

// layerForget drops a layer not asked about for this long (its container
// is gone).
const layerForget = 5 * time.Minute

type layerEntry struct {
	ls      LayerStats
	walked  time.Time // when the walk that gave ls began
	asked   time.Time
	walking bool
}

type layerCache struct {
	mu     sync.Mutex
	m      map[string]*layerEntry
	pruned time.Time
	// sem bounds the background walks to the CPUs.
	sem chan struct{}
	// walk is layerUsage; tests count the walks.
	walk func(string) LayerStats
}

var layerUse = newLayerCache(layerUsage)

func newLayerCache(walk func(string) LayerStats) *layerCache {
	return &layerCache{m: map[string]*layerEntry{}, sem: make(chan struct{}, runtime.GOMAXPROCS(0)), walk: walk}
}

// get returns the use of the layer at dir, at most layerTTL (and a walk's
// time) old.
func (c *layerCache) get(dir string) LayerStats {
	now := time.Now()
	c.mu.Lock()
	c.prune(now)
	e, ok := c.m[dir]
	if ok {
		e.asked = now
		if now.Sub(e.walked) >= layerTTL && !e.walking {
			e.walking = true
			go c.refresh(dir)
		}
		ls := e.ls
		c.mu.Unlock()
		return ls
	}
	c.mu.Unlock()
	ls := c.walk(dir)
	c.mu.Lock()
	if _, ok := c.m[dir]; !ok {
		c.m[dir] = &layerEntry{ls: ls, walked: now, asked: now}
	}
	c.mu.Unlock()
	return ls
}

func (c *layerCache) refresh(dir string) {
	c.sem <- struct{}{}
	start := time.Now()
	ls := c.walk(dir)
	<-c.sem
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[dir]; ok {
		e.ls, e.walked, e.walking = ls, start, false
	}
}

// prune drops the layers not asked about lately, once a minute at most.
func (c *layerCache) prune(now time.Time) {
	if now.Sub(c.pruned) < time.Minute {
		return
	}
	c.pruned = now
	for dir, e := range c.m {
		if now.Sub(e.asked) > layerForget && !e.walking {
			delete(c.m, dir)
		}
	}
}

// layerUsage walks a writable layer: bytes allocated and inodes.
func layerUsage(dir string) LayerStats {
	ls := LayerStats{Mountpoint: dir}
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil // a hard link counts once
			}
			seen[st.Ino] = true
			ls.Bytes += uint64(st.Blocks) * 512
		}
		ls.Inodes++
		return nil
	})
	return ls
}
