package cri

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/errdefs"
	"github.com/berth-dev/berth/imageservice"
)

func (s *Server) imageService() (*imageservice.Service, error) {
	if s.opts.Images == nil {
		return nil, fmt.Errorf("%w: no image service configured", errdefs.ErrUnimplemented)
	}
	return s.opts.Images, nil
}

// imageRequest is the preamble of the RPCs that name one image: the
// service, and the reference, which must not be empty.
func (s *Server) imageRequest(spec *runtimeapi.ImageSpec) (*imageservice.Service, string, error) {
	svc, err := s.imageService()
	if err != nil {
		return nil, "", err
	}
	ref := strings.TrimSpace(spec.GetImage())
	if ref == "" {
		return nil, "", fmt.Errorf("%w: image reference is empty", errdefs.ErrInvalidArgument)
	}
	return svc, ref, nil
}

func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	svc, ref, err := s.imageRequest(req.GetImage())
	if err != nil {
		return nil, err
	}
	var auth *imageservice.Auth
	if a := req.GetAuth(); a != nil {
		auth = &imageservice.Auth{
			Username: a.Username, Password: a.Password, Auth: a.Auth, ServerAddress: a.ServerAddress,
			IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
		}
	}
	start := time.Now()
	id, err := svc.Pull(ctx, ref, auth)
	if err != nil {
		return nil, err
	}
	observePull(svc, id, time.Since(start))
	return &runtimeapi.PullImageResponse{ImageRef: id}, nil
}

func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	svc, ref, err := s.imageRequest(req.GetImage())
	if err != nil {
		return nil, err
	}
	img, err := svc.Resolve(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": imageInfo(img)}
	}
	return resp, nil
}

func imageInfo(img *imageservice.Image) string {
	var b strings.Builder
	b.WriteString(`{"imageSpec":`)
	b.Write(img.ConfigJSON)
	b.WriteString(`,"layerDirs":[`)
	for i, d := range img.LayerDirs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(d))
	}
	b.WriteString("]}")
	return b.String()
}

func (s *Server) ListImages(_ context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.listImages(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: imgs}, nil
}

func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	imgs, err := s.listImages(req.GetFilter())
	if err != nil {
		return err
	}
	const batch = 100
	for i := 0; i < len(imgs); i += batch {
		if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: imgs[i:min(i+batch, len(imgs))]}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) listImages(f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	svc, err := s.imageService()
	if err != nil {
		return nil, err
	}
	if ref := strings.TrimSpace(f.GetImage().GetImage()); ref != "" {
		img, err := svc.Resolve(context.Background(), ref)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*runtimeapi.Image{toCRIImage(img)}, nil
	}
	imgs, err := svc.List()
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, len(imgs))
	for i, img := range imgs {
		out[i] = toCRIImage(img)
	}
	return out, nil
}

func (s *Server) RemoveImage(_ context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	svc, ref, err := s.imageRequest(req.GetImage())
	if err != nil {
		return nil, err
	}
	if err := svc.Remove(ref); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (s *Server) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	svc, err := s.imageService()
	if err != nil {
		return nil, err
	}
	images, containers := svc.FsInfo()
	resp := &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{toFsUsage(images)}}
	if containers != nil {
		resp.ContainerFilesystems = []*runtimeapi.FilesystemUsage{toFsUsage(*containers)}
	}
	return resp, nil
}

func toFsUsage(u imageservice.FsUsage) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  u.Timestamp.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
	}
}

func toCRIImage(img *imageservice.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Pinned:      img.Pinned,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
	}
	// The kubelet checks runAsNonRoot against Uid, or Username when the
	// image names its user.
	user, _, _ := strings.Cut(img.Config.Config.User, ":")
	if user != "" {
		if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
			out.Uid = &runtimeapi.Int64Value{Value: uid}
		} else {
			out.Username = user
		}
	}
	return out
}
