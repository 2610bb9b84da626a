package benchrun

import (
	"runtime"
	"time"
)

// Usage is what the process has used: CPU time, user and system (0 where
// not measured), and heap allocations, as counts and bytes.
type Usage struct {
	CPU     time.Duration
	Mallocs uint64
	Bytes   uint64
}

// ReadUsage reads the process's usage so far. It stops the world briefly
// (runtime.ReadMemStats), so it belongs at the edges of a window.
func ReadUsage() Usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Usage{CPU: ProcessCPU(), Mallocs: ms.Mallocs, Bytes: ms.TotalAlloc}
}

// Sub returns what was used between v and u.
func (u Usage) Sub(v Usage) Usage {
	return Usage{CPU: u.CPU - v.CPU, Mallocs: u.Mallocs - v.Mallocs, Bytes: u.Bytes - v.Bytes}
}
