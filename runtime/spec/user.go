package spec

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
)

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

func readLines(fsys fs.FS, name string, fields int, each func([]string) bool) error {
	if fsys == nil {
		return fs.ErrNotExist
	}
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) < fields {
			continue
		}
		if !each(parts) {
			return nil
		}
	}
	return s.Err()
}

// findPasswd returns the first entry that match accepts.
func findPasswd(fsys fs.FS, match func(passwdEntry) bool) (*passwdEntry, error) {
	var found *passwdEntry
	err := readLines(fsys, "etc/passwd", 7, func(p []string) bool {
		uid, err1 := strconv.ParseUint(p[2], 10, 32)
		gid, err2 := strconv.ParseUint(p[3], 10, 32)
		if err1 != nil || err2 != nil {
			return true
		}
		e := passwdEntry{name: p[0], uid: uint32(uid), gid: uint32(gid), home: p[5]}
		if match(e) {
			found = &e
			return false
		}
		return true
	})
	return found, err
}

func readGroups(fsys fs.FS) ([]groupEntry, error) {
	var out []groupEntry
	err := readLines(fsys, "etc/group", 4, func(p []string) bool {
		gid, err := strconv.ParseUint(p[2], 10, 32)
		if err != nil {
			return true
		}
		var members []string
		if p[3] != "" {
			members = strings.Split(p[3], ",")
		}
		out = append(out, groupEntry{name: p[0], gid: uint32(gid), members: members})
		return true
	})
	return out, err
}

type resolvedUser struct {
	specs.User
	home string
}

func notFoundIn(what, name string, err error) error {
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("look up %s %q in the image: %w", what, name, err)
	}
	return fmt.Errorf("%w: %s %q not found in the image", errdefs.ErrInvalidArgument, what, name)
}

// resolveUser applies the request's user (run_as_user, run_as_username,
// run_as_group) or else the image's ("uid", "uid:gid", "name",
// "name:group"), with names looked up in the image's /etc/passwd and
// /etc/group, and the supplementary groups by the request's policy.
func resolveUser(fsys fs.FS, sc *runtimeapi.LinuxContainerSecurityContext, imageUser string) (resolvedUser, error) {
	var userPart, groupPart string
	switch {
	case sc.GetRunAsUsername() != "":
		userPart = sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		userPart = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	default:
		if sc.GetRunAsGroup() != nil {
			return resolvedUser{}, invalid("run_as_group needs run_as_user or run_as_username")
		}
		userPart, groupPart, _ = strings.Cut(imageUser, ":")
	}
	if g := sc.GetRunAsGroup(); g != nil {
		groupPart = strconv.FormatInt(g.GetValue(), 10)
	}
	var r resolvedUser
	var pw *passwdEntry
	var err error
	if userPart == "" {
		userPart = "0"
	}
	if uid, perr := strconv.ParseUint(userPart, 10, 32); perr == nil {
		r.UID = uint32(uid)
		// A numeric user may have no entry: gid 0 then, as with Docker.
		pw, _ = findPasswd(fsys, func(e passwdEntry) bool { return e.uid == r.UID })
	} else {
		pw, err = findPasswd(fsys, func(e passwdEntry) bool { return e.name == userPart })
		if pw == nil {
			return r, notFoundIn("user", userPart, err)
		}
		r.UID = pw.uid
	}
	if pw != nil {
		r.GID = pw.gid
		r.home = pw.home
	}
	groups, gerr := readGroups(fsys)
	if groupPart != "" {
		if gid, perr := strconv.ParseUint(groupPart, 10, 32); perr == nil {
			r.GID = uint32(gid)
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					r.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return r, notFoundIn("group", groupPart, gerr)
			}
		}
	}
	gids := []uint32{r.GID}
	seen := map[uint32]bool{r.GID: true}
	add := func(g uint32) {
		if !seen[g] {
			seen[g] = true
			gids = append(gids, g)
		}
	}
	if sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict && pw != nil {
		for _, g := range groups {
			for _, m := range g.members {
				if m == pw.name {
					add(g.gid)
				}
			}
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		if g < 0 || g > int64(^uint32(0)) {
			return r, invalid("supplemental group %d is out of range", g)
		}
		add(uint32(g))
	}
	r.AdditionalGids = gids
	return r, nil
}
