package p2c

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/resolver"

	"github.com/switchyard-dev/switchyard/loadbalance"
)

// lockedPicker is the baseline: the same picker behind one mutex, as
// go-zero's p2c takes on every pick.
type lockedPicker struct {
	mu sync.Mutex
	p  *picker
}

func (l *lockedPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p.Pick(info)
}

// subConn stands for a SubConn; a picker only hands it on.
type subConn struct {
	balancer.SubConn
	n int
}

// newPicker builds a picker over n SubConns as the balancer would, with
// the default config (ejection on, no zone).
func newPicker(n int) *picker {
	b := &p2cBalancer{stats: map[balancer.SubConn]*stats{}}
	info := base.PickerBuildInfo{ReadySCs: map[balancer.SubConn]base.SubConnInfo{}}
	for i := range n {
		info.ReadySCs[&subConn{n: i}] = base.SubConnInfo{Address: resolver.Address{Addr: fmt.Sprintf("127.0.0.1:%d", 1000+i)}}
	}
	return b.Build(info).(*picker)
}

// BenchmarkPick measures a pick and its Done from all cores at once:
// ours (lock-free) against the same logic behind a mutex, in one run.
//
//	go test -run '^$' -bench Pick -cpu 1,2 ./loadbalance/p2c
func BenchmarkPick(b *testing.B) {
	for _, bc := range []struct {
		name string
		p    balancer.Picker
	}{
		{"lockfree", newPicker(8)},
		{"mutex", &lockedPicker{p: newPicker(8)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := bc.p.Pick(balancer.PickInfo{Ctx: context.Background()})
					if err != nil {
						b.Fatal(err)
					}
					res.Done(balancer.DoneInfo{})
				}
			})
		})
	}
}

// TestConcurrentPicksKeepCounts picks and finishes from many goroutines at
// once (run under -race): every in-flight count returns to zero and every
// estimate stays a finite, non-negative number.
func TestConcurrentPicksKeepCounts(t *testing.T) {
	p := newPicker(4)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				res, err := p.Pick(balancer.PickInfo{Ctx: context.Background()})
				if err != nil {
					t.Error(err)
					return
				}
				res.Done(balancer.DoneInfo{})
			}
		})
	}
	wg.Wait()
	for i, st := range p.stats {
		if n := st.inflight.Load(); n != 0 {
			t.Fatalf("instance %d: %d calls still in flight after all finished", i, n)
		}
		if l := st.load(time.Now().UnixNano()); l < 0 || l != l {
			t.Fatalf("instance %d: load %v", i, l)
		}
	}
}

// TestIdleEstimateDecays: an instance whose last call was slow but long
// ago is drawn over one that is busy being fast now, because its estimate
// has decayed since; without the decay it would be starved for good.
func TestIdleEstimateDecays(t *testing.T) {
	now := time.Now()
	var slow, fast stats
	slow.observe(now.Add(-60*time.Second), 10*time.Millisecond)
	fast.observe(now, time.Millisecond)
	if got, want := slow.load(now.UnixNano()), float64(10*time.Millisecond)*math.Exp(-6); math.Abs(got-want) > want*1e-6 {
		t.Fatalf("load of an estimate 60s old: %v, want %v (10ms decayed over 6 time constants)", got, want)
	}
	p := newPicker(2)
	p.stats[0].observe(now.Add(-60*time.Second), 10*time.Millisecond)
	p.stats[1].observe(now, time.Millisecond)
	counts := [2]int{}
	for range 100 {
		res, err := p.Pick(balancer.PickInfo{Ctx: context.Background()})
		if err != nil {
			t.Fatal(err)
		}
		// Count by the picker's index: its endpoints come from a map, so
		// index and SubConn number need not agree.
		counts[slices.IndexFunc(p.set.Endpoints, func(e loadbalance.Endpoint) bool { return e.SubConn == res.SubConn })]++
		res.Done(balancer.DoneInfo{})
	}
	if counts[0] == 0 {
		t.Fatalf("the idle instance got none of 100 picks: %v", counts)
	}
}
