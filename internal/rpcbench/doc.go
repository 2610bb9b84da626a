// Package rpcbench measures what the Switchyard RPC stack costs over raw
// grpc-go (issue #4), for `yard bench rpc` and BenchmarkRPC alike.
//
// Two sides call the same Echo service (package echo) with the same
// payload, in this process, over loopback TCP:
//
//   - raw: grpc.NewServer with no options, and grpc.NewClient to the
//     server's address, insecure, with no interceptors (pick_first).
//   - stack: rpc.NewServer (health, reflection and the default
//     interceptors), registered in ZooKeeper, and rpc.NewClient through
//     the zk:/// resolver with the p2c_ewma balancer and the default
//     client interceptors (default timeout, logging).
//
// Each side has one server instance and one ClientConn; all of a side's
// workers share that ClientConn, as an application's calls would. Both
// use whatever rpc.NewServer and rpc.NewClient install by default, so the
// benchmark follows the stack as it grows.
//
// Load is closed-loop: at concurrency c, c workers each make one call,
// time it, and make the next. A phase runs one side at one concurrency:
// a warm-up whose calls are not timed, then a measured window; calls that
// straddle either edge of the window are not counted. QPS is the calls
// completed in the window over its length; p50 and p99 come from every
// call timed in it, through a log-linear histogram (relative error under
// 1%, fixed memory).
//
// Machine noise (other processes, frequency scaling, a GC cycle) must
// not favour one side, so the sides alternate: for each concurrency,
// Rounds rounds run raw then stack, stack then raw, raw then stack, and
// so on (ABBA order, so a steady drift affects both alike), and a
// collected garbage heap starts every phase. Each reported figure is the
// median of the rounds' figures (for an even count, the mean of the
// middle two); the rounds are in the result too. The schedule, the closed
// loop and the medians are package benchrun's, which lockbench shares.
//
// Any failed call fails the run: a benchmark of errors measures nothing.
// The stack's service must have no other instance in the registry, and
// every answer must come from the side's own server.
//
// Every goroutine a side starts, servers and clients included, runs with
// the pprof label side=raw or side=stack (workers also with c=<n>), so
// one CPU profile of a run separates the two:
//
//	go tool pprof -tagfocus side=stack -top cpu.prof
package rpcbench
