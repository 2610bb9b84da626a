// Package zklock is the ZooKeeper lock recipe under the lock service:
// mutual exclusion with fencing tokens, herd-free waiting, protected
// creates, and a loss signal per grant. It is the layer the lock service's
// server builds leases, limits and its gRPC front door on.
//
// # Layout in ZooKeeper
//
//	/switchyard/locks                                   persistent (WithRoot)
//	/switchyard/locks/<escaped name>                    CONTAINER
//	/switchyard/locks/<escaped name>/_c_<guid>-lock-<seq> EPHEMERAL_SEQUENTIAL; data: the caller's
//
// A lock name is a relative path ("orders/42", see ValidateName) escaped
// into one znode name ("orders%2F42": "%" and "/" and the characters
// ZooKeeper refuses become %XX of their UTF-8), so that every lock is a
// direct child of the root, List is one read of the root's children, and
// "a" and "a/b" never share a directory. A lock's directory is a container
// node: once its last contender goes, the server deletes it by itself (at
// its next container check, every minute by default), so released locks
// leave nothing behind. A create that finds the directory swept away in
// between makes it again and retries.
//
// # The recipe
//
// This is ZooKeeper's lock recipe, as Curator's InterProcessMutex does it
// (https://zookeeper.apache.org/doc/current/recipes.html#sc_recipes_Locks).
// Acquire creates an ephemeral sequential contender node; the contender
// with the lowest sequence holds the lock. Every other contender watches
// exactly one node — its immediate predecessor, with a data watch — and
// never the directory's children, so a release wakes exactly one waiter.
// When the predecessor goes, the waiter reads the children once more and
// either holds the lock or watches its new predecessor (which was a waiter
// that gave up). Stats counts the wake-ups. The holder watches its own
// node, for Lost; a contender that finds the queue empty watches its own
// node from the start, since it most likely holds the lock at once.
//
// Creates are protected: the node name carries the caller's GUID, and a
// contender first looks for a node of its session with that GUID. So a
// create whose reply was lost (the connection dropped after the server
// made the node) is found and adopted, never orphaned, and a retried
// Acquire with the same GUID — the lock service derives it from the
// request id — gets the same node and the same grant, never a second one.
// A node with the GUID in another live session is ErrGUIDConflict.
//
// # Fencing tokens
//
// A grant's token is its node's creation zxid. ZooKeeper's zxids only
// grow, so a lock's tokens strictly increase in the order it is granted,
// across its whole history, even when its directory is swept and made
// again and sequence numbers restart. A resource that refuses writes with
// a token below the highest it has seen is safe from a holder that was
// paused past its loss.
//
// # Cancellation
//
// Acquire blocks until the lock is held or its context ends. A wait that
// ends — cancelled, timed out, a try-lock that found the lock held, or the
// Locker closed — deletes its node before Acquire returns, with a context
// of its own bounded by the cleanup timeout (WithCleanupTimeout), since the
// caller's has ended; a deletion still unconfirmed then goes on in the
// background until the node is gone or its session ends. Acquire calls
// sharing a GUID share one node, which goes when the last of them leaves.
//
// # Loss
//
// A Grant's Lost channel closes when the lock is no longer held without
// Release having been called: the node was deleted by someone else, its
// session expired (every ephemeral node of the session went with it), the
// connection was closed, or the Locker was. A watch on the node and the
// connection's session notifications (package zkconn) drive it. A mere
// disconnection followed by a reconnection to the same session is not a
// loss. ZooKeeper says a session expired only once the client reconnects,
// so Lost can fire late: a holder partitioned away is expired by the
// server, and the next waiter granted, before it can know. Whoever
// promises exclusion for a time must bound it by the session timeout and
// stop promising while disconnected — the lock service's leases do.
//
// # Concurrency
//
// A Locker and its Grants are safe for concurrent use. Every goroutine a
// Locker starts is stopped by Close, which waits for them; close the
// Locker before its connection. go-zookeeper calls take no context: the
// package stops waiting for them when a context ends, and they end by
// themselves within the session timeout.
package zklock
