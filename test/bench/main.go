// Command bench measures a CRI runtime through its API, so the same run can
// measure berth and another runtime side by side (-endpoint).
//
//	go run ./test/bench -endpoint unix:///run/berth/berth.sock [benchmark ...]
//
// With no benchmark named, all run. Each benchmark lives in its own file and
// registers itself in benchmarks.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// env is what every benchmark gets.
type env struct {
	ctx     context.Context
	runtime runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient
	// flags benchmarks share
	endpoint string
}

type benchmark struct {
	name string
	run  func(e *env) error
}

var benchmarks []benchmark

// current names the benchmark running, for the rows summary adds.
var current string

func register(name string, run func(e *env) error) {
	benchmarks = append(benchmarks, benchmark{name: name, run: run})
}

func main() {
	endpoint := flag.String("endpoint", "unix:///run/berth/berth.sock", "CRI endpoint to measure")
	timeout := flag.Duration("timeout", 30*time.Minute, "time limit of the whole run (the churn's duration is added when it runs and -timeout is not given)")
	flag.Parse()
	if !flagGiven("timeout") && (flag.NArg() == 0 || slices.Contains(flag.Args(), "churn")) {
		*timeout += *churnDuration
	}

	// The kubelet's (and crictl's) receive limit: a metrics list of 250
	// pods is over gRPC's default 4 MiB.
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	e := &env{ctx: ctx, runtime: runtimeapi.NewRuntimeServiceClient(conn), images: runtimeapi.NewImageServiceClient(conn), endpoint: *endpoint}

	want := map[string]bool{}
	for _, a := range flag.Args() {
		want[a] = true
	}
	sort.Slice(benchmarks, func(i, j int) bool { return benchmarks[i].name < benchmarks[j].name })
	failed := false
	for _, b := range benchmarks {
		if len(want) > 0 && !want[b.name] {
			continue
		}
		fmt.Printf("== %s (%s)\n", b.name, *endpoint)
		current = b.name
		load := startLoad()
		if err := b.run(e); err != nil {
			fmt.Printf("   FAILED: %v\n", err)
			results.add(row{bench: b.name, measure: "FAILED: " + err.Error()})
			failed = true
		}
		// Rows without a load of their own get the benchmark's.
		results.setLoad(b.name, load.stop())
	}
	fmt.Printf("\n== results (load: 1-minute load average while measured, mean (min-max), %d CPUs)\n", runtime.NumCPU())
	results.write(os.Stdout)
	if failed {
		os.Exit(1)
	}
}

// flagGiven tells whether the flag was on the command line.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// summary prints the median and p95 of durations under a label.
func summary(label string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	p := func(q float64) time.Duration { return s[int(q*float64(len(s)-1)+0.5)] }
	fmt.Printf("   %-28s n=%-3d p50=%-10v p95=%-10v\n", label, len(s), p(0.5).Round(time.Microsecond), p(0.95).Round(time.Microsecond))
	results.add(row{bench: current, measure: label, n: fmt.Sprint(len(s)), value: latency(s)})
}
