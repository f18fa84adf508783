package imageservice

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/imageservice/unpack"
)

// addLayer moves an unpacked layer into place and records it.
func (s *Service) addLayer(j layerJob, tmp string, st unpack.Stats) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	hexID := strings.TrimPrefix(j.chainID, "sha256:")
	used := map[string]bool{}
	for _, l := range s.layers {
		used[l.Dir] = true
	}
	dir := ""
	for _, n := range []int{16, 24, 32, 64} {
		if n <= len(hexID) && !used[hexID[:n]] {
			dir = hexID[:n]
			break
		}
	}
	if dir == "" {
		return fmt.Errorf("no free dir name for layer %s", j.chainID)
	}
	dst := filepath.Join(s.layersDir, dir)
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return s.noSpace(fmt.Errorf("move layer into place: %w", err))
	}
	rec := &layerRecord{ChainID: j.chainID, DiffID: j.diffID, Dir: dir, Size: st.Size, Inodes: st.Inodes}
	if err := s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketLayers, rec.ChainID, rec) }); err != nil {
		os.RemoveAll(dst)
		return s.dbNoSpace(fmt.Errorf("record layer %s: %w", j.chainID, err))
	}
	s.layers[rec.ChainID] = rec
	return nil
}

// commit records the image in one transaction, moving its tag away from
// any image that had it.
func (p *pull) commit(id, manifestDigest string, cfg []byte, jobs []layerJob) error {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &record{ID: id, ManifestDigest: manifestDigest, Config: cfg, Pulled: time.Now().UTC()}
	if old, ok := s.images[id]; ok {
		rec.RepoTags = slices.Clone(old.RepoTags)
		rec.RepoDigests = slices.Clone(old.RepoDigests)
	}
	for _, j := range jobs {
		rec.Layers = append(rec.Layers, j.chainID)
		if l, ok := s.layers[j.chainID]; ok {
			rec.Size += l.Size
		} else {
			return fmt.Errorf("layer %s vanished before commit", j.chainID)
		}
	}
	tag := ""
	if p.ref.Digest == "" {
		tag = p.ref.TagRef()
	}
	digestRef := p.ref.Name() + "@" + manifestDigest
	changed := map[string]*record{}
	for oid, o := range s.images {
		if oid == id || !slices.Contains(o.RepoTags, tag) {
			continue
		}
		no := *o
		no.RepoTags = slices.DeleteFunc(slices.Clone(o.RepoTags), func(t string) bool { return t == tag })
		changed[oid] = &no
	}
	if tag != "" && !slices.Contains(rec.RepoTags, tag) {
		rec.RepoTags = append(rec.RepoTags, tag)
	}
	if !slices.Contains(rec.RepoDigests, digestRef) {
		rec.RepoDigests = append(rec.RepoDigests, digestRef)
	}
	changed[id] = rec
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for k, r := range changed {
			if err := put(tx, bucketImages, k, r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return s.dbNoSpace(fmt.Errorf("record image %s: %w", id, err))
	}
	for k, r := range changed {
		s.images[k] = r
	}
	return nil
}
