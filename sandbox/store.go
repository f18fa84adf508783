package sandbox

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/errdefs"
)

var bucket = []byte("sandboxes")

// store keeps pod records in bbolt, one JSON value per pod id, each written
// in its own transaction.
type store struct{ db *bolt.DB }

func (s store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
}

func (s store) put(sb *Sandbox) error {
	b, err := json.Marshal(sb)
	if err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(sb.ID), b) }); err != nil {
		return errdefs.NoSpace(fmt.Errorf("record pod %s: %w", sb.ID, err), filepath.Dir(s.db.Path()))
	}
	return nil
}

func (s store) delete(id string) error {
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("delete record of pod %s: %w", id, err)
	}
	return nil
}

func (s store) all() ([]*Sandbox, error) {
	var out []*Sandbox
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var sb Sandbox
			if err := json.Unmarshal(v, &sb); err != nil {
				return fmt.Errorf("pod record %s: %w", k, err)
			}
			out = append(out, &sb)
			return nil
		})
	})
	return out, err
}
