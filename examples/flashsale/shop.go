package flashsale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
)

// unlockTimeout bounds a release, which runs even when the purchase's
// context has ended: a lock left held would hold up the item's next buyer
// until its lease ran out.
const unlockTimeout = 5 * time.Second

// Shop runs the purchase procedure against a Store: capacity, lock, read,
// fenced write, unlock. It is safe for concurrent use; it owns no goroutines.
type Shop struct {
	store    *Store
	locks    *lockclient.Client
	capacity *Capacity
	prefix   string
	log      *slog.Logger
	inFlight atomic.Int64
}

// NewShop returns a shop selling store's items. Each purchase waits for
// capacity, then takes the lock lockPrefix+item through locks (so shops
// sharing a store must share the prefix; shops with stores of their own
// should not). lockPrefix is a lock-name prefix such as "flashsale/";
// logger may be nil (slog.Default()).
func NewShop(store *Store, locks *lockclient.Client, capacity *Capacity, lockPrefix string, logger *slog.Logger) *Shop {
	if logger == nil {
		logger = slog.Default()
	}
	return &Shop{store: store, locks: locks, capacity: capacity, prefix: lockPrefix, log: logger}
}

// Store returns the shop's store.
func (s *Shop) Store() *Store { return s.store }

// InFlight returns the purchases inside Purchase now: waiting for
// capacity, for the lock, or at the store.
func (s *Shop) InFlight() int64 { return s.inFlight.Load() }

// Purchase runs one purchase: it checks the request, waits for the
// downstream's capacity (Capacity.Wait), takes the item's lock (waiting in
// line until ctx ends), reads the item's stock (Store.Read) and writes the
// purchase from it under the lock's fencing token (Store.Write), and
// releases the lock, whatever ctx has done by then. The lock is what makes
// the read and the write one step for the item's buyers. An error means
// the store did not apply the purchase, except in one case the caller
// cannot tell apart from it — the lock was lost after the write — which a
// retry with the same purchase id settles, as a duplicate.
func (s *Shop) Purchase(ctx context.Context, req *flashsalev1.PurchaseRequest) (_ Result, err error) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	if err := checkPurchaseID(req.GetPurchaseId()); err != nil {
		return Result{}, err
	}
	if q := req.GetQuantity(); q != 1 {
		return Result{}, fmt.Errorf("%w: quantity %d, want 1", ErrInvalidPurchase, q)
	}
	if _, _, err := s.store.Stock(req.GetItem()); err != nil {
		return Result{}, err
	}
	if err := s.capacity.Wait(ctx); err != nil {
		return Result{}, err
	}
	l, err := s.locks.Lock(ctx, s.prefix+req.GetItem())
	if err != nil {
		return Result{}, fmt.Errorf("flashsale: locking %q: %w", req.GetItem(), err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if uerr := l.Unlock(uctx); uerr != nil && !errors.Is(uerr, lockclient.ErrLost) {
			// The purchase stands; the lease runs out by itself.
			s.log.Warn("flashsale: unlock failed", "item", req.GetItem(), "err", uerr)
		}
	}()
	snap, err := s.store.Read(req.GetItem())
	if err != nil {
		return Result{}, err
	}
	return s.store.Write(req.GetItem(), req.GetPurchaseId(), l.Token(), snap)
}
