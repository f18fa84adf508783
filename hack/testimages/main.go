// Command testimages builds berth's test images and serves them from a local
// registry, for make test-images, hack/registry.sh and manual runs.
//
//	testimages build                     build (or find) the cached layout, print its dir
//	testimages serve [-addr A] [-hosts-dir D] [-addr-file F] [-blob-dir B] [-node-e2e-agnhost BIN]
//	                                     serve every fixture until SIGINT/SIGTERM; with
//	                                     -node-e2e-agnhost, the node e2e stand-ins instead
//	testimages list                      print every fixture reference
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/berth-dev/berth/test/framework/testimages"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("testimages: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: testimages build|serve|list [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "build":
		start := time.Now()
		dir, err := testimages.Build(ctx, testimages.CacheRoot())
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("layout ready in %.1fs", time.Since(start).Seconds())
		fmt.Println(dir)
	case "list":
		dir, err := testimages.Build(ctx, testimages.CacheRoot())
		if err != nil {
			log.Fatal(err)
		}
		srv, err := testimages.Serve(dir, testimages.Options{})
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range srv.Refs {
			fmt.Println(r)
		}
		srv.Close()
	case "serve":
		serve(ctx, os.Args[2:])
	default:
		log.Fatalf("unknown command %q: want build, serve or list", os.Args[1])
	}
}

func serve(ctx context.Context, args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	hostsDir := fs.String("hosts-dir", "", "write <upstream>/hosts.toml here (berthd --registry-config-dir)")
	addrFile := fs.String("addr-file", "", "write the listen address here once serving")
	verbose := fs.Bool("v", false, "log every request")
	blobDir := fs.String("blob-dir", "", "keep pushed blobs here (default: a temp dir removed on exit)")
	agnhost := fs.String("node-e2e-agnhost", "", "serve the node e2e suite's stand-in images (testimages.NodeE2ERefs), with this agnhost binary")
	_ = fs.Parse(args)

	var dir string
	var err error
	if *agnhost != "" {
		// A cache dir of their own: Build sweeps layouts of other keys
		// out of its own.
		dir, err = testimages.BuildNodeE2E(ctx, testimages.CacheRoot()+"-node-e2e", *agnhost)
	} else {
		dir, err = testimages.Build(ctx, testimages.CacheRoot())
	}
	if err != nil {
		log.Fatal(err)
	}
	opts := testimages.Options{Addr: *addr, BlobDir: *blobDir}
	if *verbose {
		opts.Logf = log.Printf
	}
	srv, err := testimages.Serve(dir, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if *hostsDir != "" {
		if err := testimages.WriteHostsDir(*hostsDir, srv.Addr, testimages.Upstreams); err != nil {
			log.Fatal(err)
		}
	}
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(srv.Addr+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("serving %d images on http://%s", len(srv.Refs), srv.Addr)
	<-ctx.Done()
	log.Printf("stopping")
}
