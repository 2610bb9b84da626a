package flashsale_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// fixture is a lock-service replica (gRPC and NATS front doors) on the
// shared ZooKeeper and an embedded NATS server.
type fixture struct {
	reg     *registry.Client
	natsURL string
	replica *locktest.Replica
}

func startFixture(t *testing.T) *fixture {
	t.Helper()
	reg := lbtest.Dial(t)
	ns := natstest.Start(t)
	r := locktest.StartReplica(t, reg, zktest.Shared(t).Addr(0), "flashsale-"+t.Name(), 4*time.Second)
	door, err := lockmq.Serve(natstest.Connect(t, ns.ClientURL()), r.Server, lockmq.WithLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := door.Close(); err != nil {
			t.Error(err)
		}
	})
	return &fixture{reg: reg, natsURL: ns.ClientURL(), replica: r}
}

// shop returns a shop with 5 units of each of 3 items, taking locks
// through locks, with a capacity of perSecond.
func (f *fixture) shop(t *testing.T, locks *lockclient.Client, perSecond float64) *flashsale.Shop {
	t.Helper()
	store := newStore(t, map[string]int64{"i0": 5, "i1": 5, "i2": 5})
	capacity, err := flashsale.NewCapacity(perSecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	return flashsale.NewShop(store, locks, capacity, "flashsale/"+t.Name()+"/", zktest.Logger(t))
}

func purchase(i int) *flashsalev1.PurchaseRequest {
	return &flashsalev1.PurchaseRequest{PurchaseId: fmt.Sprintf("p%d", i), Item: fmt.Sprintf("i%d", i%3), Quantity: 1}
}

// checkSale checks a store that was sent purchases p0..p29 (and
// duplicates of some): 15 sold, 15 sold out, nothing oversold.
func checkSale(t *testing.T, s *flashsale.Store, dups int64) {
	t.Helper()
	st := s.Stats()
	if st.Applied != 30 || st.Purchased != 15 || st.SoldOut != 15 || st.Duplicates != dups || st.Oversold != 0 {
		t.Errorf("store %+v, want 30 applied: 15 purchased, 15 sold out; %d duplicates; 0 oversold", st, dups)
	}
	if bad := s.Audit(); bad != 0 {
		t.Errorf("audit finds %d units wrong", bad)
	}
}

// TestFlashSaleRPC buys through the gRPC front door, found in the
// registry, with locks over gRPC: every purchase is applied once, a retry
// is a duplicate, and a bad request is INVALID_ARGUMENT.
func TestFlashSaleRPC(t *testing.T) {
	f := startFixture(t)
	shop := f.shop(t, locktest.Client(t, f.reg), 1000)
	srv := flashsale.NewGRPCServer(f.reg, shop, zktest.Logger(t),
		rpc.WithRateLimit(rate.Limit(1000), 100), rpc.WithMaxConcurrent(64),
		rpc.WithMetrics(nil), rpc.WithDrainMargin(10*time.Millisecond), rpc.WithLogger(zktest.Logger(t)))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, srv, lis)
	ctx := context.Background()
	conn, err := rpc.NewClient(f.reg, flashsale.ServiceName, rpc.WithClientMetrics(nil), rpc.WithClientLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := flashsalev1.NewFlashSaleServiceClient(conn)
	// The registry's news reaches the client's resolver a moment later.
	awaitCount(t, "Stock answered", 1, func() int {
		if _, err := client.Stock(ctx, &flashsalev1.StockRequest{Item: "i0"}); err != nil {
			return 0
		}
		return 1
	})

	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			resp, err := client.Purchase(ctx, purchase(i))
			if err != nil || resp.GetToken() == 0 {
				t.Errorf("purchase %d: %v, %v", i, resp, err)
			}
		})
	}
	wg.Wait()
	again, err := client.Purchase(ctx, purchase(0))
	if err != nil || !again.GetDuplicate() {
		t.Errorf("retried purchase: %v, %v; want a duplicate", again, err)
	}
	stock, err := client.Stock(ctx, &flashsalev1.StockRequest{Item: "i0"})
	if err != nil || stock.GetRemaining() != 0 || stock.GetSold() != 5 {
		t.Errorf("stock of i0: %v, %v; want 0 left, 5 sold", stock, err)
	}
	if _, err := client.Purchase(ctx, &flashsalev1.PurchaseRequest{PurchaseId: "x", Item: "nope", Quantity: 1}); grpcCode(err) != "InvalidArgument" {
		t.Errorf("unknown item: %v, want InvalidArgument", err)
	}
	if _, err := client.Purchase(ctx, &flashsalev1.PurchaseRequest{PurchaseId: "y", Item: "i0", Quantity: 2}); grpcCode(err) != "InvalidArgument" {
		t.Errorf("quantity 2: %v, want InvalidArgument", err)
	}
	checkSale(t, shop.Store(), 1)
}

// queueFixture is the MQ path: a queue on one NATS connection and a lock
// client over NATS on another.
func (f *fixture) queue(t *testing.T, workers int, ackWait time.Duration) (*flashsale.Queue, jetstream.JetStream, *lockclient.Client, flashsale.QueueConfig) {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, f.natsURL))
	if err != nil {
		t.Fatal(err)
	}
	cfg := flashsale.QueueConfig{Stream: "FLASHSALE", Subject: "flashsale.purchases", Consumer: "workers", Workers: workers, AckWait: ackWait}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := flashsale.OpenQueue(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	wjs, err := jetstream.New(natstest.Connect(t, f.natsURL))
	if err != nil {
		t.Fatal(err)
	}
	locks := lockclient.New(lockmq.Transport(natstest.Connect(t, f.natsURL)), lockclient.WithLogger(zktest.Logger(t)))
	return q, wjs, locks, cfg
}

// processed collects what workers report.
type processed struct {
	mu    sync.Mutex
	acked map[string]int // by purchase id
	max   uint64         // highest delivery count seen
	dups  int64          // purchases the store answered as duplicates
}

func (p *processed) observe(e flashsale.Processed) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Acked {
		p.acked[e.PurchaseID]++
	}
	if e.Err == nil && e.Result.Duplicate {
		p.dups++
	}
	p.max = max(p.max, e.Delivery)
}

// duplicates returns how many purchases the workers were told were
// duplicates.
func (p *processed) duplicates() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dups
}

func (p *processed) count() (int, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked), p.max
}

func awaitCount(t *testing.T, what string, want int, count func() int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d after 30s, want %d", what, count(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFlashSaleMQ buys through the JetStream work queue: every purchase is
// applied once and acked, the stream empties, a purchase published again
// under its id is dropped by the server, and one published again without
// it is absorbed by the store as a duplicate.
func TestFlashSaleMQ(t *testing.T) {
	f := startFixture(t)
	q, wjs, locks, cfg := f.queue(t, 4, 0)
	shop := f.shop(t, locks, 1000)
	got := &processed{acked: map[string]int{}}
	ctx := context.Background()
	w, err := flashsale.StartWorkers(ctx, wjs, cfg, shop, flashsale.WithObserver(got.observe), flashsale.WithWorkerLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	for i := range 30 {
		if _, err := q.Enqueue(ctx, purchase(i)); err != nil {
			t.Fatal(err)
		}
	}
	if ack, err := q.Enqueue(ctx, purchase(1)); err != nil || !ack.Duplicate {
		t.Errorf("publishing p1 again: %+v, %v; want a duplicate the server drops", ack, err)
	}
	awaitCount(t, "purchases acked", 30, func() int { n, _ := got.count(); return n })

	// A producer that retries without the message id gets its purchase
	// stored twice; the store absorbs the second.
	data, err := proto.Marshal(purchase(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wjs.Publish(ctx, cfg.Subject, data); err != nil {
		t.Fatal(err)
	}
	awaitCount(t, "duplicates absorbed", 1, func() int { return int(shop.Store().Stats().Duplicates) })
	awaitCount(t, "empty stream", 0, func() int {
		d, err := q.Depth(ctx)
		if err != nil || d != 0 {
			return -1
		}
		return 0
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkSale(t, shop.Store(), 1)
	if err := q.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestFlashSaleWorkersCrash crashes a pool that holds messages and starts
// another: what the first held comes back after the ack wait, and every
// purchase is applied exactly once.
func TestFlashSaleWorkersCrash(t *testing.T) {
	f := startFixture(t)
	q, wjs, locks, cfg := f.queue(t, 4, time.Second)
	shop := f.shop(t, locks, 5) // slow: the first pool holds messages waiting for capacity
	got := &processed{acked: map[string]int{}}
	ctx := context.Background()
	first, err := flashsale.StartWorkers(ctx, wjs, cfg, shop, flashsale.WithObserver(got.observe), flashsale.WithWorkerLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := q.Enqueue(ctx, purchase(i)); err != nil {
			t.Fatal(err)
		}
	}
	awaitCount(t, "purchases acked before the crash", 2, func() int { n, _ := got.count(); return n })
	first.Crash()
	if err := first.Close(); err != nil { // after Crash: returns at once
		t.Fatal(err)
	}

	fast := flashsale.NewShop(shop.Store(), locks, mustCapacity(t, 1000), "flashsale/"+t.Name()+"/", zktest.Logger(t))
	second, err := flashsale.StartWorkers(ctx, wjs, cfg, fast, flashsale.WithObserver(got.observe), flashsale.WithWorkerLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	awaitCount(t, "purchases acked", 30, func() int { n, _ := got.count(); return n })
	if _, maxDelivery := got.count(); maxDelivery < 2 {
		t.Errorf("no message was delivered twice: the crashed pool held none?")
	}
	// The store's duplicates, counted on the workers' side: the purchases
	// the store answered as duplicates, as the workers reported them.
	checkSale(t, shop.Store(), got.duplicates())
}

func mustCapacity(t *testing.T, perSecond float64) *flashsale.Capacity {
	t.Helper()
	c, err := flashsale.NewCapacity(perSecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func grpcCode(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String()
}
