package lockbench_test

import (
	"flag"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/benchrun/benchruntest"
	"github.com/switchyard-dev/switchyard/internal/lockbench"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

var (
	benchDuration = flag.Duration("lockbench.duration", time.Second, "BenchmarkLock: measured window of each cycle phase")
	benchRounds   = flag.Int("lockbench.rounds", 3, "BenchmarkLock: phases per side and concurrency, and handoff runs per side")
	benchWaiters  = flag.Int("lockbench.waiters", 100, "BenchmarkLock: waiters queued in each handoff run")
)

// BenchmarkLock is `yard bench lock` under go test: raw ZooKeeper
// create+delete pairs and acquire+release through the gRPC lock service
// in the same run, against the package's ZooKeeper, plus handoffs and
// wake-ups per release. It reports each side's ops/s, p50 and p99 at c=1
// and c=64, the ratios gRPC ÷ raw, the handoff p50 and p99 (through gRPC
// and on zklock directly) and the wake-ups per release. One run is one
// measurement, whatever b.N is; its length comes from the flags:
//
//	go test -run '^$' -bench Lock ./internal/lockbench -args -lockbench.duration 3s
func BenchmarkLock(b *testing.B) {
	cfg := lockbench.DefaultConfig()
	cfg.ZK = zktest.Shared(b).ConnectString()
	cfg.Duration, cfg.Warmup, cfg.Rounds, cfg.Waiters = *benchDuration, *benchDuration/4, *benchRounds, *benchWaiters
	cfg.Logger = benchruntest.Logger(b)
	res, err := lockbench.Run(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cfg.Concurrency {
		k := benchrun.CellKey(c)
		for side, cell := range map[string]lockbench.Cell{lockbench.SideRaw: res.RawZK[k], lockbench.SideGRPC: res.GRPC[k]} {
			b.ReportMetric(cell.OpsPerS, side+"_"+k+"_ops/s")
			b.ReportMetric(cell.P50us, side+"_"+k+"_p50_us")
			b.ReportMetric(cell.P99us, side+"_"+k+"_p99_us")
			b.ReportMetric(cell.CPUusPerOp, side+"_"+k+"_cpu_us/op")
		}
	}
	for k, v := range res.Ratio {
		b.ReportMetric(v, "ratio_"+k)
	}
	b.ReportMetric(res.Handoff.P50us, "handoff_p50_us")
	b.ReportMetric(res.Handoff.P99us, "handoff_p99_us")
	b.ReportMetric(res.Handoff.ZKLockP50us, "handoff_zklock_p50_us")
	b.ReportMetric(res.Handoff.ZKLockP99us, "handoff_zklock_p99_us")
	b.ReportMetric(res.Handoff.WakeupsPerRelease, "wakeups/release")
	b.ReportMetric(0, "ns/op")
}
