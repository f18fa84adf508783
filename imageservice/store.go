package imageservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice/reference"
)

var (
	bucketImages = []byte("images")
	bucketLayers = []byte("image-layers")
	bucketUsers  = []byte("image-users")
)

// record is an image as stored.
type record struct {
	ID             string          `json:"id"` // config digest
	RepoTags       []string        `json:"repoTags,omitempty"`
	RepoDigests    []string        `json:"repoDigests,omitempty"`
	ManifestDigest string          `json:"manifestDigest"`
	Config         json.RawMessage `json:"config"`
	Layers         []string        `json:"layers"` // chain IDs, lowest first
	Size           int64           `json:"size"`
	Pulled         time.Time       `json:"pulled"`
}

// layerRecord is one unpacked layer.
type layerRecord struct {
	ChainID string `json:"chainID"`
	DiffID  string `json:"diffID"`
	Dir     string `json:"dir"` // name under images/layers
	Size    int64  `json:"size"`
	Inodes  int64  `json:"inodes"`
}

// userRecord is a lease on an image's layers.
type userRecord struct {
	ImageID string   `json:"imageID"`
	Layers  []string `json:"layers"`
}

// Image is an image as the rest of berth sees it.
type Image struct {
	ID          string // sha256:<config digest>
	RepoTags    []string
	RepoDigests []string
	Size        uint64 // unpacked bytes of its layers
	Pinned      bool
	Config      ocispec.Image
	ConfigJSON  []byte
	// LayerDirs are the unpacked layers, lowest first.
	LayerDirs []string
}

func (s *Service) load() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketLayers, bucketUsers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("image %s: %w", k, err)
			}
			s.images[r.ID] = &r
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketLayers).ForEach(func(k, v []byte) error {
			var r layerRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("layer %s: %w", k, err)
			}
			s.layers[r.ChainID] = &r
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var r userRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("image user %s: %w", k, err)
			}
			s.users[string(k)] = &r
			return nil
		})
	})
}

func put(tx *bolt.Tx, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), b)
}

// lookup finds the image ref names; s.mu must be held.
func (s *Service) lookup(ref string) (*record, error) {
	if r, ok := s.images[ref]; ok {
		return r, nil
	}
	if h, ok := reference.IDPrefix(ref); ok {
		var found []*record
		for id, r := range s.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), h) {
				found = append(found, r)
			}
		}
		if len(found) == 1 {
			return found[0], nil
		}
		if len(found) > 1 {
			return nil, fmt.Errorf("%w: image ID prefix %q is ambiguous", errdefs.ErrInvalidArgument, ref)
		}
		if strings.HasPrefix(ref, "sha256:") {
			return nil, fmt.Errorf("%w: image %q", errdefs.ErrNotFound, ref)
		}
	}
	named, err := reference.Parse(ref)
	if err != nil {
		return nil, err
	}
	for _, r := range s.images {
		if named.Digest != "" {
			if slices.Contains(r.RepoDigests, named.DigestRef()) {
				return r, nil
			}
		} else if slices.Contains(r.RepoTags, named.TagRef()) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: image %q", errdefs.ErrNotFound, ref)
}

func (s *Service) toImage(r *record) (*Image, error) {
	img := &Image{
		ID:          r.ID,
		RepoTags:    slices.Clone(r.RepoTags),
		RepoDigests: slices.Clone(r.RepoDigests),
		Size:        uint64(r.Size),
		Pinned:      s.pinned(r),
		ConfigJSON:  r.Config,
	}
	if err := json.Unmarshal(r.Config, &img.Config); err != nil {
		return nil, fmt.Errorf("config of image %s: %w", r.ID, err)
	}
	for _, c := range r.Layers {
		l, ok := s.layers[c]
		if !ok {
			return nil, fmt.Errorf("image %s: layer %s is missing", r.ID, c)
		}
		img.LayerDirs = append(img.LayerDirs, filepath.Join(s.layersDir, l.Dir))
	}
	return img, nil
}

func (s *Service) pinned(r *record) bool {
	for _, p := range s.pinnedRefs {
		if p == r.ID || slices.Contains(r.RepoTags, p) || slices.Contains(r.RepoDigests, p) {
			return true
		}
	}
	return false
}

// Resolve returns the image ref names (tag, digest reference, ID or
// unambiguous ID prefix), with its config and layer dirs.
func (s *Service) Resolve(_ context.Context, ref string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	return s.toImage(r)
}

// List returns all images, ordered by ID.
func (s *Service) List() ([]*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.images))
	for id := range s.images {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]*Image, 0, len(ids))
	for _, id := range ids {
		img, err := s.toImage(s.images[id])
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// Remove removes an image. A tag removes that tag and the image only with
// its last tag; an ID or digest reference removes the image with all its
// tags. Removing what does not exist is not an error. Layers stay while a
// user or another image holds them.
func (s *Service) Remove(ref string) error {
	s.mu.Lock()
	defer s.unlock()
	r, err := s.lookup(ref)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	untagOnly := ""
	if named, err := reference.Parse(ref); err == nil && named.Digest == "" && slices.Contains(r.RepoTags, named.TagRef()) && len(r.RepoTags) > 1 {
		if _, isID := reference.IDPrefix(ref); !isID {
			untagOnly = named.TagRef()
		}
	}
	if untagOnly != "" {
		nr := *r
		nr.RepoTags = slices.DeleteFunc(slices.Clone(r.RepoTags), func(t string) bool { return t == untagOnly })
		if err := s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketImages, nr.ID, &nr) }); err != nil {
			return s.dbNoSpace(fmt.Errorf("untag %s: %w", untagOnly, err))
		}
		s.images[nr.ID] = &nr
		return nil
	}
	var drop []string
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketImages).Delete([]byte(r.ID)); err != nil {
			return err
		}
		delete(s.images, r.ID)
		drop = s.unusedLayers()
		for _, c := range drop {
			if err := tx.Bucket(bucketLayers).Delete([]byte(c)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		s.images[r.ID] = r
		return s.dbNoSpace(fmt.Errorf("remove image %s: %w", r.ID, err))
	}
	s.removeLayerDirs(drop)
	klog.V(2).InfoS("Removed image", "id", r.ID, "tags", r.RepoTags, "layersRemoved", len(drop))
	return nil
}

// unusedLayers are layer records no image, user or pull in progress holds;
// s.mu must be held.
func (s *Service) unusedLayers() []string {
	used := map[string]bool{}
	for _, r := range s.images {
		for _, c := range r.Layers {
			used[c] = true
		}
	}
	for _, u := range s.users {
		for _, c := range u.Layers {
			used[c] = true
		}
	}
	var out []string
	for c := range s.layers {
		if !used[c] && s.pending[c] == 0 {
			out = append(out, c)
		}
	}
	return out
}

// removeLayerDirs moves the dirs of layers whose records left the database
// into the temp dir (fast, so under s.mu; a pull of the same layer may put a
// new dir in the same place right after) and queues them for deletion by
// unlock; s.mu must be held.
func (s *Service) removeLayerDirs(chains []string) {
	for _, c := range chains {
		l := s.layers[c]
		delete(s.layers, c)
		if l == nil {
			continue
		}
		src := filepath.Join(s.layersDir, l.Dir)
		trash, err := os.MkdirTemp(s.tmpDir, "rm-")
		if err == nil {
			dst := filepath.Join(trash, "l")
			if err = os.Rename(src, dst); err == nil {
				s.trash = append(s.trash, trash)
				continue
			}
			os.Remove(trash)
		}
		klog.ErrorS(err, "Move layer dir away, removing it in place", "chainID", c)
		if err := os.RemoveAll(src); err != nil {
			klog.ErrorS(err, "Remove layer dir", "chainID", c)
		}
	}
}

// unlock releases s.mu and then deletes the layer dirs removeLayerDirs
// queued, so that deleting a large layer blocks no other call.
func (s *Service) unlock() {
	trash := s.trash
	s.trash = nil
	s.mu.Unlock()
	for _, d := range trash {
		if err := os.RemoveAll(d); err != nil {
			klog.ErrorS(err, "Remove layer dir", "dir", d)
		}
	}
}

// gc removes layers nothing holds; s.mu must be held.
func (s *Service) gc() error {
	drop := s.unusedLayers()
	if len(drop) == 0 {
		return nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, c := range drop {
			if err := tx.Bucket(bucketLayers).Delete([]byte(c)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return s.dbNoSpace(fmt.Errorf("remove unused layers: %w", err))
	}
	s.removeLayerDirs(drop)
	return nil
}

// AddUser records that user (a container ID) uses image imageID's layers.
func (s *Service) AddUser(imageID, user string) error {
	return s.AddUserWith(imageID, user, nil)
}

// AddUserWith is AddUser whose database transaction also runs with (when
// not nil): the caller's own record of the user is written in the same
// commit, one disk sync less, and either both are stored or neither.
func (s *Service) AddUserWith(imageID, user string, with func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.images[imageID]
	if !ok {
		return fmt.Errorf("%w: image %s", errdefs.ErrNotFound, imageID)
	}
	u := &userRecord{ImageID: r.ID, Layers: slices.Clone(r.Layers)}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := put(tx, bucketUsers, user, u); err != nil {
			return err
		}
		if with != nil {
			return with(tx)
		}
		return nil
	}); err != nil {
		return s.dbNoSpace(fmt.Errorf("record image user %s: %w", user, err))
	}
	s.users[user] = u
	return nil
}

// RemoveUser drops user's lease and the layers only it held. Unknown users
// are not an error.
func (s *Service) RemoveUser(user string) error {
	s.mu.Lock()
	defer s.unlock()
	u, ok := s.users[user]
	if !ok {
		return nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketUsers).Delete([]byte(user)) }); err != nil {
		return s.dbNoSpace(fmt.Errorf("remove image user %s: %w", user, err))
	}
	delete(s.users, user)
	if err := s.gc(); err != nil {
		s.users[user] = u
		return err
	}
	return nil
}

// cleanDisk removes temp dirs and layer dirs without a record, which a crash
// during a pull leaves; it runs before serving.
func (s *Service) cleanDisk() error {
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("clean %s: %w", s.tmpDir, err)
	}
	for _, d := range []string{s.layersDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	for _, l := range s.layers {
		known[l.Dir] = true
	}
	ents, err := os.ReadDir(s.layersDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !known[e.Name()] {
			klog.InfoS("Removing layer dir without a record", "dir", e.Name())
			if err := os.RemoveAll(filepath.Join(s.layersDir, e.Name())); err != nil {
				return err
			}
		}
	}
	return s.gc()
}

func isNotFound(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }
