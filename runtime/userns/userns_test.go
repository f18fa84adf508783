package userns

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/errdefs"
)

func TestValidate(t *testing.T) {
	one := func(c, h, s uint32) []IDMap { return []IDMap{{ContainerID: c, HostID: h, Size: s}} }
	ok := Mapping{UIDs: one(0, 100000, 65536), GIDs: one(0, 100000, 65536)}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]Mapping{
		"no uids":       {GIDs: one(0, 1, 1)},
		"two gids":      {UIDs: one(0, 1, 1), GIDs: append(one(0, 1, 1), one(1, 5, 1)...)},
		"root unmapped": {UIDs: one(1, 1000, 10), GIDs: one(0, 1000, 10)},
		"empty":         {UIDs: one(0, 1000, 0), GIDs: one(0, 1000, 10)},
		"overflow":      {UIDs: one(0, 1<<32-10, 10), GIDs: one(0, 1000, 10)},
	} {
		if err := m.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
	if !ok.Equal(ok) || ok.Equal(Mapping{UIDs: ok.UIDs, GIDs: one(0, 1, 1)}) {
		t.Error("Equal")
	}
	if ok.RootUID() != 100000 || ok.RootGID() != 100000 {
		t.Error("root ids")
	}
}

func TestSearchable(t *testing.T) {
	dir, err := os.MkdirTemp("", "searchable-") // t.TempDir's parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := Searchable(filepath.Join(dir, "not", "made", "yet")); err != nil {
		t.Errorf("searchable dir: %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Searchable(filepath.Join(dir, "x")); err == nil {
		t.Error("a 0700 ancestor passed")
	}
}
