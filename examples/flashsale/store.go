package flashsale

import (
	"fmt"
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
	// Duplicates counts writes of a purchase id already applied, answered
	// with the first outcome and absorbed.
	Duplicates int64 `json:"duplicates"`
	// Fenced counts writes refused for a stale fencing token.
	Fenced int64 `json:"fenced"`
	// Oversold counts the writes after which the store's invariant was
	// found broken: for every item, the purchases in the ledger plus the
	// remaining stock equal the initial stock. A write based on a stale
	// read — another buyer's write landed between this buyer's Read and
	// its Write — breaks it: an update is lost, and the item may be sold
	// beyond its stock. It must stay 0.
	Oversold int64 `json:"oversold"`
}

// Snapshot is what a buyer read of an item's stock (Store.Read), to base
// its write on.
type Snapshot struct {
	// Remaining is the stock the buyer saw.
	Remaining int64
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

// Store is an in-memory stock of items that takes purchases under fencing
// tokens. It stands for the database of a real shop, reached over the
// network: a buyer reads the item's stock (Read), then writes the stock it
// computed from what it read (Write). Each call is atomic on its own, but
// nothing makes the pair atomic: the item's lock, held around both, is
// what keeps two buyers from reading the same stock and both writing it
// down by one — a lost update, or an oversell. The fencing token keeps a
// writer that lost its lock (paused, partitioned, or a duplicate) from
// landing a write after the next holder's. What gets through anyway is
// counted (StoreStats.Oversold) and found by Audit. It is safe for
// concurrent use.
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

// Read returns the item's remaining stock as of now, for a Write to base
// a purchase on.
func (s *Store) Read(itemName string) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[itemName]
	if !ok {
		return Snapshot{}, fmt.Errorf("%w: %q", ErrUnknownItem, itemName)
	}
	return Snapshot{Remaining: it.remaining}, nil
}

// Write records purchase purchaseID of one unit of item under the item's
// fencing token, from snap, what the buyer read of the item before, and
// says what it did. In this order:
//
//   - a purchase id applied before is a duplicate: the first Result comes
//     back with Duplicate set, and nothing changes (whatever the token);
//   - a token lower than the highest the item has seen is refused with
//     ErrStaleToken, and nothing changes;
//   - snap showed no stock left: the purchase is recorded as SOLD_OUT, and
//     the stock is left as it is;
//   - otherwise the purchase is PURCHASED and the item's stock is set to
//     snap.Remaining-1, whatever it is now: a blind write, as a buyer
//     computing the new stock from its read makes it. Had another write
//     landed since snap was read, an update is lost.
//
// A recorded purchase (either outcome) raises the item's highest token.
// The token is checked at the write only: a holder that lost its lock and
// writes after the next holder's Read, but before its Write, still lands
// (its token is the highest seen so far), and the next holder's write then
// overwrites it: that update is lost, which the store counts and Audit
// finds.
func (s *Store) Write(itemName, purchaseID string, token uint64, snap Snapshot) (Result, error) {
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
	if snap.Remaining > 0 {
		it.remaining = snap.Remaining - 1
		it.sold++
		res.Outcome = flashsalev1.Outcome_OUTCOME_PURCHASED
		s.stats.Purchased++
	} else {
		s.stats.SoldOut++
	}
	res.Remaining = it.remaining
	s.ledger[purchaseID] = entry{Result: res, item: itemName}
	s.stats.Applied++
	if it.sold+it.remaining != it.initial {
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
// check Write makes after each write: per item, the PURCHASED entries of
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
