// Command nodepods lists the pods berthd's database under a root dir holds,
// for hack/clean-node.sh when berthd is not running (it then cannot be asked
// over the CRI). One line per pod: id, namespace/name.
//
//	nodepods ROOT
//
// Exit status 0 (the list, maybe empty; no database is no pod), 3 when the
// database is locked (a berthd holds it), 1 on any other error.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// podsBucket is sandbox/store.go's bucket: one JSON record per pod id.
var podsBucket = []byte("sandboxes")

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: nodepods ROOT")
		os.Exit(2)
	}
	path := filepath.Join(os.Args[1], "berth.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		fmt.Fprintf(os.Stderr, "nodepods: database %s is locked: a berthd runs on it\n", path)
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodepods: open %s: %v\n", path, err)
		os.Exit(1)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(podsBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec struct {
				Config struct {
					Metadata struct{ Name, Namespace string }
				}
			}
			_ = json.Unmarshal(v, &rec) // an unreadable record is still a pod
			fmt.Printf("%s %s/%s\n", k, rec.Config.Metadata.Namespace, rec.Config.Metadata.Name)
			return nil
		})
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodepods: read %s: %v\n", path, err)
		os.Exit(1)
	}
}
