// Package demo runs `yard demo`: scenarios that put the RPC path and the
// message-queue path of Switchyard side by side on the same workload — the
// flash sale of package examples/flashsale — and report what a message
// queue buys over RPC and what it costs, in figures a reader can rerun
// (issue #7).
//
// # Pieces
//
//   - Env is the stack a run uses: ZooKeeper and NATS (started here, as
//     `yard up` does, or named by address), a registry client, two
//     lock-service replicas (gRPC and NATS front doors), lock clients over
//     both transports, and the producers' NATS connection.
//   - Scenario is one demo (Name, Run). Catalog lists them in report
//     order, each with the New that makes it from Options.
//   - Profile and Dispatch are the open-loop load: requests are sent on a
//     schedule fixed in advance, each in a goroutine of its own, so a slow
//     path never delays a send, and latency counts from the scheduled
//     send time — no coordinated omission.
//   - Recorder keeps the time series of a path (counts per bucket,
//     sampled gauges); Tracker follows each request of a path from offered
//     to settled, and gives the latencies.
//   - ScenarioResult and PathResult are the report: a side-by-side table
//     per scenario, verdict lines, JSON (WriteJSON), and, under an output
//     directory, the raw series as CSV and gonum/plot charts (WriteOut).
//
// # Figures every path reports
//
// The JSON keys of a path object, always present:
//
//	offered               requests sent on the schedule
//	accepted              requests the path took responsibility for: an RPC
//	                      call answered OK (the purchase applied), or a publish
//	                      JetStream acknowledged (the purchase stored)
//	completed             accepted requests settled at the store (purchased or
//	                      sold out) by the end of the drain
//	rejected              requests refused at the door: RESOURCE_EXHAUSTED from
//	                      the RPC stack's limiter; a publish JetStream refused
//	lost                  accepted requests the store has no record of at the end
//	oversold              lost updates and oversells at the store (must be 0).
//	                      A purchase reads the stock, then writes back what
//	                      it read less one; only the item's lock keeps
//	                      another buyer's write from landing in between.
//	                      Counted: the writes after which the ledger and the
//	                      stock disagreed, plus the units by which the
//	                      ledger audit finds them apart at the end
//	duplicates            deliveries of an already-applied purchase id the
//	                      store absorbed
//	capacity_per_s        the downstream's capacity C
//	max_downstream_per_s  the most purchases the downstream admitted in any
//	                      1 s window (sliding by one bucket)
//	p50_ms, p99_ms, max_ms  end-to-end latency of completed requests, from
//	                      the scheduled send to the purchase settled
//	drain_s               from the end of the schedule to the last completion
//	                      (0 when everything was done by then)
//
// Scenario-specific figures sit beside them in the same object; a figure
// that does not apply to a path is 0 in the JSON and "n/a" in the table.
// Every flash-sale path has timed_out, failed, sold, sold_out,
// applied_not_accepted, queue_depth_max, client_dropped and
// max_send_lag_ms; then, by scenario:
//
//	peak-shaving  burst_offered, burst_refused, burst_refused_pct
//	decoupling    outage_s, outage_offered, outage_errors, outage_errors_pct,
//	              producer_errors, applied; on MQ restart_drain_s (the
//	              backlog worked off after the workers came back),
//	              held_unacked (applied but unacked when they were killed)
//	              and redelivered
//	mq-costs      <phase>_p50_ms, <phase>_p99_ms, <phase>_refused_pct for
//	              the phases light, near, over and cool; probes,
//	              stale_reads_pct, stale_p50_ms, stale_max_ms,
//	              stale_never_fresh (a reader checking the stock right
//	              after a purchase was accepted); retries,
//	              retries_dup_at_door, retries_failed (purchases sent
//	              twice). Its config lists the moving parts each path
//	              needs (moving_parts), by hand, not measured
//
// Broadcast counts deliveries (an event × a subscriber) rather than
// purchases, on three paths (rpc, mq for core NATS, jetstream): offered
// are the deliveries owed, accepted those the producer's path took,
// completed those received, rejected the failures the producer saw, lost
// those never received; oversold, capacity_per_s and max_downstream_per_s
// do not apply, and drain_s is the offline subscriber's catch-up (on
// JetStream). Beside them: producer_calls, producer_errors;
// fanout_n<N>_producer_calls, _producer_p50_ms, _time_to_all_p50_ms,
// _time_to_all_p99_ms, _reached_all for each subscriber count N; slow_*
// (one subscriber slow: the producer's time, the others' latency, its own
// lag, what it dropped) and offline_* (one subscriber offline: what it
// missed, the errors the producer saw, what it got once back).
package demo
