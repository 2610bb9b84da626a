//go:build !linux

package rpcbench

import "time"

// processCPU is not measured off Linux: the CPU figures are left 0.
func processCPU() (time.Duration, bool) { return 0, false }
