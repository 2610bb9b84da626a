package flashsale

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
)

// MaxPurchaseIDLen is the longest purchase id the store takes, in bytes.
const MaxPurchaseIDLen = 64

// Result is what the store did with one purchase.
type Result struct {
	// Outcome is PURCHASED or SOLD_OUT.
	Outcome flashsalev1.Outcome
	// Remaining is the item's stock after the purchase.
	Remaining int64
	// Duplicate is set when the purchase id had been applied before: the
	// outcome is the first one, and nothing changed.
	Duplicate bool
	// Token is the fencing token the purchase was applied under (that of
	// the first application, for a duplicate).
	Token uint64
}

// StoreStats counts what a Store has done since it was made.
type StoreStats struct {
	// Applied counts the purchase ids applied (each once).
	Applied int64 `json:"applied"`
	// Purchased and SoldOut split Applied by outcome.
	Purchased int64 `json:"purchased"`
	SoldOut   int64 `json:"sold_out"`
	// Duplicates counts applications of a purchase id already applied,
	// answered with the first outcome and absorbed.
	Duplicates int64 `json:"duplicates"`
	// Fenced counts writes refused for a stale fencing token.
	Fenced int64 `json:"fenced"`
	// Oversold counts the times the store's invariant was found broken
	// after a write: for every item, remaining ≥ 0 and the purchases in
	// the ledger plus the remaining stock equal the initial stock. Any
	// oversell or lost update breaks it. It must stay 0.
	Oversold int64 `json:"oversold"`
}

// item is one item's stock.
type item struct {
	initial   int64
	remaining int64
	sold      int64  // purchases in the ledger
	highest   uint64 // fencing token
}

// entry is a purchase in the ledger.
type entry struct {
	Result
	item string
}

// Store is an in-memory stock of items that applies purchases under
// fencing tokens. It stands for the database of a real shop: Apply is one
// conditional write, atomic on its own, and the lock each purchase holds
// around it orders the writers; the fencing token is what keeps a writer
// that lost its lock (paused, partitioned, or a duplicate) from landing a
// write out of order. It is safe for concurrent use.
type Store struct {
	mu     sync.Mutex
	items  map[string]*item
	ledger map[string]entry // by purchase id: the first outcome
	stats  StoreStats
}

// NewStore returns a store holding stock[name] units of each item.
func NewStore(stock map[string]int64) (*Store, error) {
	s := &Store{items: make(map[string]*item, len(stock)), ledger: map[string]entry{}}
	for name, n := range stock {
		if name == "" || n < 0 {
			return nil, fmt.Errorf("flashsale: item %q with stock %d: want a name and 0 or more units", name, n)
		}
		s.items[name] = &item{initial: n, remaining: n}
	}
	return s, nil
}

// Items returns the names of the items the store sells, sorted.
func (s *Store) Items() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.items))
}

// Apply applies purchase purchaseID of one unit of item under the item's
// fencing token, and says what it did. In this order:
//
//   - a purchase id applied before is a duplicate: the first Result comes
//     back with Duplicate set, and nothing changes (whatever the token);
//   - a token lower than the highest the item has seen is refused with
//     ErrStaleToken, and nothing changes;
//   - no stock left: the purchase is recorded as SOLD_OUT;
//   - otherwise the stock goes down by one and the purchase is PURCHASED.
//
// A recorded purchase (either outcome) raises the item's highest token.
func (s *Store) Apply(itemName, purchaseID string, token uint64) (Result, error) {
	if err := checkPurchaseID(purchaseID); err != nil {
		return Result{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[itemName]
	if !ok {
		return Result{}, fmt.Errorf("%w: %q", ErrUnknownItem, itemName)
	}
	if first, ok := s.ledger[purchaseID]; ok {
		s.stats.Duplicates++
		res := first.Result
		res.Duplicate = true
		return res, nil
	}
	if token < it.highest {
		s.stats.Fenced++
		return Result{}, fmt.Errorf("%w: %d for %q, which has seen %d", ErrStaleToken, token, itemName, it.highest)
	}
	it.highest = token
	res := Result{Outcome: flashsalev1.Outcome_OUTCOME_SOLD_OUT, Token: token}
	if it.remaining > 0 {
		it.remaining--
		it.sold++
		res.Outcome = flashsalev1.Outcome_OUTCOME_PURCHASED
		s.stats.Purchased++
	} else {
		s.stats.SoldOut++
	}
	res.Remaining = it.remaining
	s.ledger[purchaseID] = entry{Result: res, item: itemName}
	s.stats.Applied++
	if it.remaining < 0 || it.sold+it.remaining != it.initial {
		s.stats.Oversold++
	}
	return res, nil
}

// Stock returns an item's remaining stock and the units sold.
func (s *Store) Stock(itemName string) (remaining, sold int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[itemName]
	if !ok {
		return 0, 0, fmt.Errorf("%w: %q", ErrUnknownItem, itemName)
	}
	return it.remaining, it.sold, nil
}

// Lookup returns the first outcome of purchase purchaseID, if the store
// has applied it.
func (s *Store) Lookup(purchaseID string) (Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.ledger[purchaseID]
	return e.Result, ok
}

// Stats returns the store's counts.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Audit checks the whole store against its ledger, independently of the
// check Apply makes after each write: per item, the PURCHASED entries of
// the ledger must not exceed the initial stock (an oversell) and must equal
// the units gone from the stock (else an update was lost). It returns the
// units by which the two disagree, summed over the items: 0 for a sound
// store.
func (s *Store) Audit() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	sold := map[string]int64{}
	for _, e := range s.ledger {
		if e.Outcome == flashsalev1.Outcome_OUTCOME_PURCHASED {
			sold[e.item]++
		}
	}
	var bad int64
	for name, it := range s.items {
		n := sold[name]
		bad += max(n-it.initial, 0)
		if gone := it.initial - it.remaining; n != gone {
			bad += max(n-gone, gone-n)
		}
	}
	return bad
}

func checkPurchaseID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: no purchase id", ErrInvalidPurchase)
	case len(id) > MaxPurchaseIDLen:
		return fmt.Errorf("%w: purchase id of %d bytes, over %d", ErrInvalidPurchase, len(id), MaxPurchaseIDLen)
	}
	return nil
}
