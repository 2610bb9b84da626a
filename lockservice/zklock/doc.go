// Package zklock is the ZooKeeper lock recipe under the lock service:
// mutual exclusion with fencing tokens, herd-free waiting, protected
// creates, claims that make one GUID one grant across every Locker, and a
// loss signal per grant. It is the layer the lock service's server builds
// leases, limits and its gRPC front door on.
//
// # Layout in ZooKeeper
//
//	/switchyard/locks                                     persistent (WithRoot)
//	/switchyard/locks/<escaped name>                      CONTAINER; written (empty) by each create, for its stat
//	/switchyard/locks/<escaped name>/_c_<guid>-lock-<seq> EPHEMERAL_SEQUENTIAL; data: the caller's
//	/switchyard/lockclaims                                persistent (WithClaimRoot; default: beside the root)
//	/switchyard/lockclaims/<shard>                        persistent, 256 of them: "00" to "ff", by a hash of the guid
//	/switchyard/lockclaims/<shard>/<guid>                 persistent, a claim; data: JSON — lock, directory,
//	                                                      the attempt that made it, its session, "ended",
//	                                                      and "reason" ("released", "expired") once ended so
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
// node, for Lost, from shortly after the grant (see Loss).
//
// One round trip when the lock is free: a contender is made by one
// multi-op (atomic: all of it or none) that creates the GUID's claim,
// creates the contender, and writes the lock's directory. The write's
// stat, in the answer, says what a create does not: the transaction's
// zxid, which is the contender's creation zxid and so its fencing token
// (all ops of a multi-op share one zxid), its time, and how many children
// the directory has — one means the contender is alone and holds the
// lock, with no read at all. (go-zookeeper has no create2, and a multi's
// create answers with the path only.) Otherwise one read of the children
// places it in the queue.
//
// # Protected creates and claims
//
// Every contender node carries its GUID in its name, and every GUID has a
// claim, created in the same multi-op as its first contender. So the claim
// exists whenever a contender for the GUID does, and a create finds out
// for free whether the GUID was ever acquired: only when the claim exists
// (the multi-op fails on it, and makes nothing) does it look among the
// lock's children. A contender of its own session with the GUID is
// adopted: a create whose reply was lost (the connection dropped after
// the server made the node) is found, never orphaned, and a retried
// Acquire — the lock service derives the GUID from the request id — gets
// the same node and the same grant. One in another live session is
// ErrGUIDConflict: the lock service sends the caller to the replica that
// holds it. None means the GUID's contender ended — released, lost,
// deleted — and the Acquire is ErrClaimEnded, by whichever Locker it
// reaches: a late duplicate is never granted a second time. A claim made
// for another lock is ErrGUIDReused. Two Lockers creating one GUID at
// once: the multi-op lets exactly one make the claim; the other finds the
// winner's contender (ErrGUIDConflict). A connection lost during the
// multi-op leaves both claim and contender, or neither; the retry finds
// out which.
//
// An attempt that grants nothing — a try-lock that found the lock held, a
// wait cancelled or timed out, a Locker closed while waiting, a grant
// withdrawn (Withdraw) — deletes its claim with its node, in one multi-op,
// so that its GUID may be tried again. A waiting contender whose node went
// with its session queues again under its own claim (the claim records
// the attempt that made it; the write is version-checked and its stat's
// creation zxid compared, so a claim swept and made again by someone else
// is never taken over). Between that loss and the new node, a duplicate
// elsewhere is told ErrClaimEnded although the original still waits.
//
// # How a grant ended
//
// Release and Expire delete a held node in a multi-op that also writes
// its claim, with the reason ("released" or "expired"); Withdraw deletes
// the claim with it. A node that goes otherwise — with its session, by
// another party, at Close — leaves its claim as it was. So whoever sees a
// holder's node gone (a Watch stream, through Holder's directory watch)
// reads from its claim how it ended: HowEnded. Locks and Holder read
// the root and a lock's directory, with one children watch each, for
// such watchers.
//
// # Claim retention and the janitor
//
// Claims are persistent: containers would go with their last child, and
// a claim has none, while TTL nodes need a server flag ZooKeeper leaves
// off by default and cannot be made in a multi-op. So each Locker runs a
// janitor (a goroutine Close stops) that, every quarter of the retention
// (WithClaimRetention, default DefaultClaimRetention, ten minutes), reads
// at most 1024 claims, resuming where the last pass stopped (a pass that
// stopped at that bound is followed by the next one 50ms later). A claim
// older than a quarter of the retention whose GUID has no contender in its
// lock's directory, in any session, is marked ended; a claim marked for
// longer than the retention is deleted. Both writes are version-checked,
// a contender made under an existing claim writes it, and the directory
// is read after the claim, so a claim that has, or since its reading got,
// a contender is never marked or deleted; several Lockers' janitors may
// sweep one claim root at once. Dedup is promised for the retention after
// a contender ends, as measured by this host's clock against the mtime
// ZooKeeper's leader wrote (clock skew between them eats into it); a
// duplicate arriving later than that may be granted again.
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
// Locker closed — deletes its node, with its claim, before Acquire
// returns, with a context of its own bounded by the cleanup timeout
// (WithCleanupTimeout), since the caller's has ended; a deletion still
// unconfirmed then goes on in the background until the node is gone or
// its session ends. Acquire calls sharing a GUID share one node, which
// goes when the last of them leaves.
//
// # Loss
//
// A Grant's Lost channel closes when the lock is no longer held without
// Release having been called: the node was deleted by someone else, its
// session expired (every ephemeral node of the session went with it), the
// connection was closed, or the Locker was. The connection's session
// notifications (package zkconn) drive it, and a watch on the node set by
// a read 50ms after the grant (a lock released sooner costs no read; a
// node deleted sooner is found gone by that read). A mere
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
