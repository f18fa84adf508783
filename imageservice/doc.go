// Package imageservice pulls images from registries, keeps each layer
// unpacked once on disk, and records images in the berth database.
//
// Layout under Options.Root (berthd's root):
//
//	images/layers/<16 hex of the chain ID>/   one layer, an overlay lower dir
//	images/tmp/                               layers being unpacked (removed at start)
//
// Database buckets: "images" (image ID → record), "image-layers" (chain ID →
// layer record) and "image-users" (user ID → the image and layers it holds).
//
// # API for containers
//
// A container's rootfs is built from Resolve:
//
//	img, err := svc.Resolve(ctx, ref) // ref: tag, digest ref, ID or ID prefix
//	img.Config                         // ocispec.Image: Env, Entrypoint, Cmd, User, WorkingDir ...
//	img.LayerDirs                      // absolute dirs, lowest layer first: reverse for overlay lowerdir
//
// and kept alive with a persisted lease:
//
//	err = svc.AddUser(img.ID, containerID) // before using img.LayerDirs
//	...
//	err = svc.RemoveUser(containerID)      // when the container is removed
//
// RemoveImage of an image in use removes its tags and record, but its layer
// directories stay until the last user is removed. AddUser fails with
// errdefs.ErrNotFound if the image is gone (a RemoveImage raced the create).
// Errors wrap errdefs sentinels.
//
// A pull (pull.go) resolves the reference to this platform's manifest,
// trying mirrors in order (resolve.go; a failure says what each host
// answered, hostfailures.go), fetches each layer once, verifying
// its digest while it streams (fetch.go, verify.go) and watching that data
// keeps arriving (progress.go), then records layers and image (commit.go).
package imageservice
