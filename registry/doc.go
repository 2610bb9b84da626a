// Package registry is the RPC path's service addressing: servers register
// their instances in ZooKeeper, and clients dial zk:///<service> and are
// told the live instances as they change.
//
// # Layout in ZooKeeper
//
//	/switchyard/services                                  persistent
//	/switchyard/services/<service>                        persistent
//	/switchyard/services/<service>/instances              persistent; data: Departures (protojson)
//	/switchyard/services/<service>/instances/<id>         EPHEMERAL;  data: Instance (protojson)
//
// Records are the protojson form of switchyard.registry.v1 messages, so
// zkCli and other languages read them. Service names and instance ids are
// single path elements (see ValidateName).
//
// # Writers
//
// A Registration owns one ephemeral node. It lives as long as the Client's
// session: a crashed server's instances vanish one session timeout after
// it dies. After a session expiry the Registration re-creates its node on
// the new session; a mere reconnect keeps the session and the node, and
// nothing is rewritten, so watchers see no flap. A node found at its path
// is replaced only when its ephemeralOwner is a session the Registration
// itself created it in; another live session's node is ErrConflict. A
// periodic self-check repairs a node that was deleted or changed.
//
// Every change a Registration makes (update, deregistration) is written in
// one transaction with a rewrite of the service's instances node, and
// creations and deletions change that node's children: so one children
// watch and one data watch per service tell a watcher of every change,
// however many instances there are. Writes that bypass this package are
// seen at the next periodic re-read.
//
// # Watchers and the resolver
//
// A Watcher (and the gRPC resolver built on it, see ResolverBuilder) reads
// the whole service after each event, coalescing bursts into one read, and
// re-reads after a session change and on a jittered timer in case an event
// was lost. Watchers of one service on one Client share one watch.
//
// Last known good: while ZooKeeper is unreachable the snapshot is marked
// Stale and the resolver pushes nothing, so gRPC keeps its connections. And
// when instances vanish without deregistering — their sessions ended, which
// is what a registry fault looks like — and they are more than a set share
// of the last list (default a half) or all of it, they are kept as Held for
// a hold time (default 30s) or until they come back. Deregistration is
// recorded in the instances node's Departures, so instances that left on
// purpose are never held: a service whose instances all deregister does
// become empty at once.
package registry
