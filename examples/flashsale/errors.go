package flashsale

import "errors"

// Errors returned by this package; test for them with errors.Is.
var (
	// ErrInvalidPurchase reports a purchase request that cannot be
	// applied: no purchase id, one too long, or a quantity other than 1.
	ErrInvalidPurchase = errors.New("flashsale: invalid purchase")
	// ErrUnknownItem reports an item the store does not sell.
	ErrUnknownItem = errors.New("flashsale: unknown item")
	// ErrStaleToken reports a write under a fencing token lower than the
	// highest the item has seen: the writer's lock was lost and granted to
	// someone else since, so its write must not land.
	ErrStaleToken = errors.New("flashsale: stale fencing token")
	// ErrNoCapacity reports a purchase whose caller's deadline would pass
	// before the downstream had room for it.
	ErrNoCapacity = errors.New("flashsale: no capacity before the deadline")
	// ErrInvalidEvent reports an event that cannot be sent or handled: no
	// event id, or a NATS message that does not decode as a SaleEvent.
	ErrInvalidEvent = errors.New("flashsale: invalid event")
)
