//go:build !linux

package lockbench

import "time"

// processCPU is not measured off Linux: the CPU figures are left 0.
func processCPU() time.Duration { return 0 }
