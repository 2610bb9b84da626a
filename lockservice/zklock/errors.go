package zklock

import "errors"

// Errors returned by this package; test for them with errors.Is. The lock
// service maps them to gRPC codes in one place.
var (
	// ErrInvalidName reports a lock name (or List prefix) that is not a
	// valid relative path; see ValidateName.
	ErrInvalidName = errors.New("zklock: invalid lock name")
	// ErrInvalidGUID reports a contender GUID that is not 16 to 64 ASCII
	// letters and digits; see ValidateGUID.
	ErrInvalidGUID = errors.New("zklock: invalid guid")
	// ErrDataTooLarge reports contender data over MaxDataLen bytes.
	ErrDataTooLarge = errors.New("zklock: contender data too large")
	// ErrLocked reports a try-lock (Acquire with wait false) on a lock
	// that another contender holds. The try-lock's own node is deleted.
	ErrLocked = errors.New("zklock: locked by another contender")
	// ErrNotHeld reports a Release of a grant that is no longer held:
	// released before, lost (it then also wraps why: ErrSessionLost,
	// ErrDeleted, ErrClosed), or made by another Locker.
	ErrNotHeld = errors.New("zklock: not held")
	// ErrNoLock reports a Describe of a lock with no contender.
	ErrNoLock = errors.New("zklock: no such lock")
	// ErrSessionLost reports that the ZooKeeper session that owned a
	// contender node ended (expired, or its connection was closed), which
	// deleted the node.
	ErrSessionLost = errors.New("zklock: ZooKeeper session lost")
	// ErrDeleted reports that a contender node was deleted by someone other
	// than its Locker while its session lived.
	ErrDeleted = errors.New("zklock: contender node deleted by another party")
	// ErrGUIDConflict reports that a contender with the GUID exists in
	// another live ZooKeeper session (another Locker's): it is never
	// adopted, so one GUID never becomes two grants.
	ErrGUIDConflict = errors.New("zklock: guid is in use by another ZooKeeper session")
	// ErrClaimEnded reports an Acquire whose guid was acquired before, by
	// any Locker, and whose contender has ended since: released, lost,
	// or deleted. No node is made: one guid is never granted twice (for
	// as long as its claim is kept; see WithClaimRetention).
	ErrClaimEnded = errors.New("zklock: guid was acquired before and has ended")
	// ErrGUIDReused reports an Acquire whose guid is claimed for another
	// lock.
	ErrGUIDReused = errors.New("zklock: guid is claimed for another lock")
	// ErrClosed reports a call on a closed Locker, and is why the grants
	// and waits of a Locker that is closed end.
	ErrClosed = errors.New("zklock: closed")
)
