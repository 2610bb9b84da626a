package flashsale_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
)

func newStore(t *testing.T, stock map[string]int64) *flashsale.Store {
	t.Helper()
	s, err := flashsale.NewStore(stock)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// buy is one buyer's purchase with nothing in between its read and its
// write, as the item's lock makes it.
func buy(s *flashsale.Store, item, id string, token uint64) (flashsale.Result, error) {
	snap, err := s.Read(item)
	if err != nil {
		return flashsale.Result{}, err
	}
	return s.Write(item, id, token, snap)
}

// TestStoreWrite runs sequences of purchases, each a read and then a
// write, against a store with 2 units of "a" and checks each answer and
// the counts at the end.
func TestStoreWrite(t *testing.T) {
	type write struct {
		item, id string
		token    uint64
		want     flashsalev1.Outcome // when wantErr is nil
		dup      bool
		wantErr  error
	}
	const (
		purchased = flashsalev1.Outcome_OUTCOME_PURCHASED
		soldOut   = flashsalev1.Outcome_OUTCOME_SOLD_OUT
	)
	tests := []struct {
		name   string
		writes []write
		want   flashsale.StoreStats
		left   int64
	}{
		{"sells until sold out", []write{
			{"a", "p1", 1, purchased, false, nil},
			{"a", "p2", 2, purchased, false, nil},
			{"a", "p3", 3, soldOut, false, nil},
		}, flashsale.StoreStats{Applied: 3, Purchased: 2, SoldOut: 1}, 0},
		{"a duplicate gets the first outcome and changes nothing", []write{
			{"a", "p1", 1, purchased, false, nil},
			{"a", "p1", 2, purchased, true, nil},
			{"a", "p1", 0, purchased, true, nil}, // even under an old token
		}, flashsale.StoreStats{Applied: 1, Purchased: 1, Duplicates: 2}, 1},
		{"a token lower than the highest seen is refused", []write{
			{"a", "p1", 5, purchased, false, nil},
			{"a", "p2", 4, 0, false, flashsale.ErrStaleToken},
			{"a", "p2", 6, purchased, false, nil},
		}, flashsale.StoreStats{Applied: 2, Purchased: 2, Fenced: 1}, 0},
		{"the same token twice is the same holder", []write{
			{"a", "p1", 7, purchased, false, nil},
			{"a", "p2", 7, purchased, false, nil},
		}, flashsale.StoreStats{Applied: 2, Purchased: 2}, 0},
		{"a sold-out purchase stays sold out when retried", []write{
			{"a", "p1", 1, purchased, false, nil},
			{"a", "p2", 2, purchased, false, nil},
			{"a", "p3", 3, soldOut, false, nil},
			{"a", "p3", 4, soldOut, true, nil},
		}, flashsale.StoreStats{Applied: 3, Purchased: 2, SoldOut: 1, Duplicates: 1}, 0},
		{"bad writes change nothing", []write{
			{"b", "p1", 1, 0, false, flashsale.ErrUnknownItem},
			{"a", "", 1, 0, false, flashsale.ErrInvalidPurchase},
			{"a", strings.Repeat("x", flashsale.MaxPurchaseIDLen+1), 1, 0, false, flashsale.ErrInvalidPurchase},
		}, flashsale.StoreStats{}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, map[string]int64{"a": 2})
			for i, w := range tt.writes {
				res, err := buy(s, w.item, w.id, w.token)
				if tt.writes[i].wantErr != nil {
					if !errors.Is(err, w.wantErr) {
						t.Fatalf("write %d: err %v, want %v", i, err, w.wantErr)
					}
					continue
				}
				if err != nil || res.Outcome != w.want || res.Duplicate != w.dup {
					t.Fatalf("write %d: %+v, %v; want %v, duplicate %v", i, res, err, w.want, w.dup)
				}
			}
			if got := s.Stats(); got != tt.want {
				t.Errorf("stats %+v, want %+v", got, tt.want)
			}
			if left, _, _ := s.Stock("a"); left != tt.left {
				t.Errorf("%d left, want %d", left, tt.left)
			}
			if bad := s.Audit(); bad != 0 {
				t.Errorf("audit finds %d units wrong", bad)
			}
		})
	}
}

// TestStoreConcurrentBuyers has many goroutines buy, and retry, more than
// the stock under increasing tokens, each purchase's read and write under
// one lock: exactly the stock is sold, once per purchase id, and the audit
// finds nothing.
func TestStoreConcurrentBuyers(t *testing.T) {
	s := newStore(t, map[string]int64{"a": 100, "b": 100})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		token uint64
	)
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				id := fmt.Sprintf("g%d-%d", g, i)
				item := []string{"a", "b"}[i%2]
				for range 2 { // the second is a retry: a duplicate
					mu.Lock() // the lock service's part: one holder at a time, tokens rising
					token++
					_, err := buy(s, item, id, token)
					mu.Unlock()
					if err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Purchased != 200 || st.SoldOut != 120 || st.Duplicates != 320 || st.Oversold != 0 {
		t.Errorf("stats %+v, want 200 purchased, 120 sold out, 320 duplicates, 0 oversold", st)
	}
	if bad := s.Audit(); bad != 0 {
		t.Errorf("audit finds %d units wrong", bad)
	}
}

// TestStoreLostUpdate interleaves the reads and writes of buyers of one
// item as a lock that fails would let them (and as one that works would
// not), and checks that the store counts every update lost and every unit
// oversold, and Audit finds them, while the fencing token and the
// purchase id keep their promises.
func TestStoreLostUpdate(t *testing.T) {
	type step struct {
		buyer string // the buyer's snapshot is its last read
		read  bool   // else a write of purchase id buyer, under token
		token uint64
		want  flashsalev1.Outcome // when err is nil
		dup   bool
		err   error
	}
	const (
		purchased = flashsalev1.Outcome_OUTCOME_PURCHASED
		soldOut   = flashsalev1.Outcome_OUTCOME_SOLD_OUT
	)
	read := func(buyer string) step { return step{buyer: buyer, read: true} }
	tests := []struct {
		name     string
		stock    int64
		steps    []step
		left     int64
		oversold int64 // StoreStats.Oversold
		audit    int64
		fenced   int64
	}{
		{"one after another: nothing lost", 2, []step{
			read("p1"), {buyer: "p1", token: 1, want: purchased},
			read("p2"), {buyer: "p2", token: 2, want: purchased},
			read("p3"), {buyer: "p3", token: 3, want: soldOut},
		}, 0, 0, 0, 0},
		{"both read before either writes: an update is lost", 2, []step{
			read("p1"), read("p2"),
			{buyer: "p1", token: 1, want: purchased},
			{buyer: "p2", token: 2, want: purchased}, // rising tokens: the fence lets it through
		}, 1, 1, 1, 0},
		{"both read the last unit: it is sold twice", 1, []step{
			read("p1"), read("p2"),
			{buyer: "p1", token: 1, want: purchased},
			{buyer: "p2", token: 2, want: purchased},
		}, 0, 1, 2, 0}, // one unit over the stock, and one update lost
		{"the lost update stays counted on later writes", 3, []step{
			read("p1"), read("p2"),
			{buyer: "p1", token: 1, want: purchased},
			{buyer: "p2", token: 2, want: purchased},
			read("p3"), {buyer: "p3", token: 3, want: purchased},
		}, 1, 2, 1, 0},
		{"a writer whose lock moved on is fenced off", 2, []step{
			read("p1"),
			read("p2"), {buyer: "p2", token: 2, want: purchased},
			{buyer: "p1", token: 1, err: flashsale.ErrStaleToken},
		}, 1, 0, 0, 1},
		{"a duplicate changes nothing, even from a stale read", 2, []step{
			read("p1"), {buyer: "p1", token: 1, want: purchased},
			{buyer: "p1", token: 2, want: purchased, dup: true}, // its old snapshot, 2 left
		}, 1, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, map[string]int64{"a": tt.stock})
			snaps := map[string]flashsale.Snapshot{}
			for i, st := range tt.steps {
				if st.read {
					snap, err := s.Read("a")
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					snaps[st.buyer] = snap
					continue
				}
				res, err := s.Write("a", st.buyer, st.token, snaps[st.buyer])
				if st.err != nil {
					if !errors.Is(err, st.err) {
						t.Fatalf("step %d: err %v, want %v", i, err, st.err)
					}
					continue
				}
				if err != nil || res.Outcome != st.want || res.Duplicate != st.dup {
					t.Fatalf("step %d: %+v, %v; want %v, duplicate %v", i, res, err, st.want, st.dup)
				}
			}
			if left, _, _ := s.Stock("a"); left != tt.left {
				t.Errorf("%d left, want %d", left, tt.left)
			}
			if st := s.Stats(); st.Oversold != tt.oversold || st.Fenced != tt.fenced {
				t.Errorf("stats %+v, want %d oversold, %d fenced", st, tt.oversold, tt.fenced)
			}
			if bad := s.Audit(); bad != tt.audit {
				t.Errorf("audit finds %d units wrong, want %d", bad, tt.audit)
			}
		})
	}
}

func TestStoreRefusesBadStock(t *testing.T) {
	for _, stock := range []map[string]int64{{"": 1}, {"a": -1}} {
		if _, err := flashsale.NewStore(stock); err == nil {
			t.Errorf("NewStore(%v) took it", stock)
		}
	}
}
