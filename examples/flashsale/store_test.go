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

// TestStoreApply runs sequences of writes against a store with 2 units of
// "a" and checks each answer and the counts at the end.
func TestStoreApply(t *testing.T) {
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
				res, err := s.Apply(w.item, w.id, w.token)
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
// the stock under increasing tokens: exactly the stock is sold, once per
// purchase id, and the audit finds nothing.
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
					_, err := s.Apply(item, id, token)
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

func TestStoreRefusesBadStock(t *testing.T) {
	for _, stock := range []map[string]int64{{"": 1}, {"a": -1}} {
		if _, err := flashsale.NewStore(stock); err == nil {
			t.Errorf("NewStore(%v) took it", stock)
		}
	}
}
