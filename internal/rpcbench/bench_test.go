package rpcbench_test

import (
	"flag"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/benchrun/benchruntest"
	"github.com/switchyard-dev/switchyard/internal/rpcbench"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

var (
	benchDuration = flag.Duration("rpcbench.duration", time.Second, "BenchmarkRPC: measured window of each phase")
	benchRounds   = flag.Int("rpcbench.rounds", 3, "BenchmarkRPC: phases per side and concurrency")
)

// BenchmarkRPC is `yard bench rpc` under go test: raw grpc-go and the
// Switchyard stack in the same run, against the package's ZooKeeper. It
// reports each side's QPS, p50, p99, CPU and allocations per call at c=1
// and c=64, and the ratios
// stack ÷ raw. One run is one measurement, whatever b.N is; its length
// comes from the flags:
//
//	go test -run '^$' -bench RPC ./internal/rpcbench -args -rpcbench.duration 3s
func BenchmarkRPC(b *testing.B) {
	cfg := rpcbench.DefaultConfig()
	cfg.ZK = zktest.Shared(b).ConnectString()
	cfg.Duration, cfg.Warmup, cfg.Rounds = *benchDuration, *benchDuration/4, *benchRounds
	cfg.Logger = benchruntest.Logger(b)
	res, err := rpcbench.Run(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cfg.Concurrency {
		k := benchrun.CellKey(c)
		for side, cell := range map[string]rpcbench.Cell{rpcbench.SideRaw: res.Raw[k], rpcbench.SideStack: res.Stack[k]} {
			b.ReportMetric(cell.QPS, side+"_"+k+"_qps")
			b.ReportMetric(cell.P50us, side+"_"+k+"_p50_us")
			b.ReportMetric(cell.P99us, side+"_"+k+"_p99_us")
			b.ReportMetric(cell.CPUusPerCall, side+"_"+k+"_cpu_us/call")
			b.ReportMetric(cell.AllocsPerCall, side+"_"+k+"_allocs/call")
		}
	}
	for k, v := range res.Ratio {
		b.ReportMetric(v, k+"_stack/raw")
	}
	b.ReportMetric(0, "ns/op")
}
