// Package benchrun is the method Switchyard's benchmarks share (packages
// rpcbench and lockbench): a Switchyard path and its baseline measured in
// one process and one run, so that their ratio means something.
//
// A run is a schedule of phases. For each concurrency in turn, Rounds
// rounds run the two sides in ABBA order — a then b, b then a, a then b,
// and so on — so that a steady drift of the machine affects both alike
// (Alternate, ABBA). A phase is a closed loop (Loop): at concurrency c, c
// workers each run an op, time it, and run the next; a collected garbage
// heap starts every phase, a warm-up whose ops are not timed comes first,
// then a measured window, and only the ops that start and end inside the
// window are timed. The process's CPU time (and, if asked, its heap
// allocations) in the window are read at its edges (Usage).
//
// Each reported figure is the median of the rounds' figures (Median), and
// a ratio of the two sides' figures is taken to three decimals (Ratio),
// then judged against a goal (Met).
//
// Every goroutine a side starts runs with the pprof label side=<name>
// (StartSide), so one CPU profile of a run separates the sides.
//
// The benchmarks keep what differs: what an op is, how its times are kept
// (a histogram or every time), the figures, their JSON, and the messages
// of their errors.
package benchrun
