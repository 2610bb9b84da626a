// Package lockbench measures what the lock service costs over raw
// ZooKeeper (issue #5), for `yard bench lock` and BenchmarkLock alike.
//
// # Cycles
//
// Two sides repeat a cycle in this process against the same ZooKeeper:
//
//   - raw_zk: a go-zookeeper create of an EPHEMERAL node, then its
//     delete — the two round trips a lock costs at the least. One session
//     is shared by all the side's workers (go-zookeeper pipelines their
//     requests on its one connection), as one client process would.
//   - grpc: an Acquire (wait=true, ttl Config.TTL) then a Release through
//     the lock service. One replica runs in this process, assembled as a
//     process serving it would be: lockservice.Server on a ZooKeeper
//     session of its own, behind rpc.NewServer (the default interceptors)
//     on a loopback port, registered in ZooKeeper. The workers share one
//     rpc.NewClient connection (zk:/// resolver, p2c_ewma, the default
//     client interceptors) carrying lockclient.GRPC, the transport the
//     Go client uses — the same calls, without its renewal watchdog, which
//     a 10s lease never wakes within a cycle.
//
// So each side's cycles put their ZooKeeper traffic on exactly one
// session (the gRPC side's registry session only watches). One replica,
// not two: a second would add a session, and with it a second pipeline to
// ZooKeeper, that the raw side does not have.
//
// Every worker cycles on a znode or lock name of its own: at concurrency
// 1 one path or name, at 64 sixty-four distinct ones, so no cycle waits
// for another's lock and the figures are those of the recipe's round
// trips, not of contention. An op is one cycle, timed from the first
// request sent to the second answered.
//
// Load is closed-loop: at concurrency c, c workers each run a cycle, time
// it, and run the next. A phase runs one side at one concurrency: a
// warm-up whose cycles are not timed — at least Config.Warmup, and until
// every worker has completed a cycle, so that the first cycle on a fresh
// lock name, which makes its directory, is never timed — then a measured
// window of Config.Duration (held open, if need be, until a cycle has
// started and ended in it); cycles that straddle either edge of the
// window are not counted. ops_per_s is the cycles completed in the window
// over its length; p50 and p99 are the nearest-rank quantiles of every
// cycle timed in it (kept exactly, 8 bytes a cycle: ZooKeeper round trips
// make them few enough).
//
// Machine noise must not favour one side, so the sides alternate: for
// each concurrency, Rounds rounds run raw then grpc, grpc then raw, and
// so on (ABBA order), and a collected garbage heap starts every phase.
// Each reported figure is the median of the rounds' figures; the rounds
// are in the result too. cpu_us_per_op is this process's CPU time in the
// window (clients, replica, go-zookeeper, runtime), not ZooKeeper's. The
// schedule, the closed loop and the medians are package benchrun's, which
// rpcbench shares.
//
// # Handoffs and wake-ups
//
// A handoff run takes one lock for a holder, queues Config.Waiters
// waiters behind it, each its own acquire in flight, and waits until
// they are all in line and watching. Then it releases the holder and
// times the handoff from the release sent to the next waiter's grant
// received; that waiter is released at once, and so on through all of
// them. Each round makes one run through the service (whose figures are
// the reported handoff p50 and p99) and one on zklock.Lockers directly,
// in ABBA order, each on a fresh lock name. Runs check mutual exclusion
// on the way: one grant per release, fencing tokens increasing.
//
// Wake-ups are counted in the zklock runs, with Locker.Stats: the watch
// events delivered to waiting contenders. The replica's own Locker is
// out of reach (lockservice.Server does not expose it), and ZooKeeper's
// counts cannot stand in for it: its watch table and its notification
// metrics count sessions, not contenders, and every contender a replica
// serves shares its one session — a herd of a hundred waiters woken by
// every release would show there as one notification. The zklock runs
// use the recipe the replica runs, on the same ZooKeeper: the holder on a
// Locker and session of its own, the waiters on another. wakeups_per_
// release is the wake-ups over the releases that had a waiter to wake
// (the last waiter's release has none), so a herd-free recipe gives
// exactly 1.
//
// A waiter is in line and watching once the lock's queue has every
// waiter and ZooKeeper's watch table (the four-letter word wchc) shows
// the waiters' session watching every contender but the last. Releasing
// earlier could reach a waiter not yet watching, which would find its
// predecessor gone without being woken. The holder has a session of its
// own in the zklock runs so that the first waiter's watch on the holder's
// node is not hidden by the holder's watch on it; in the runs through the
// service both are the replica's, so there only the other waiters' watches
// are seen. A ZooKeeper given with --zk must allow wchc
// (4lw.commands.whitelist); servers that yard starts do.
//
// # Failures, cleanup and profiles
//
// Any failed cycle or handoff fails the run: a benchmark of errors
// measures nothing. The lock service must have no other instance in the
// registry, and every grant must come from the benchmark's replica.
// Run deletes the raw side's znodes (under /switchyard/bench) and leaves
// no lock held; ZooKeeper sweeps the lock directories, containers, by
// itself.
//
// Every goroutine a side starts, sessions, servers and clients included,
// runs with the pprof label side=raw_zk, side=grpc or side=zklock, and
// the callers also with phase=cycle (and c=<n>) or phase=handoff, so one
// CPU profile of a run separates them:
//
//	go tool pprof -tagfocus side=grpc -top cpu.prof
package lockbench
