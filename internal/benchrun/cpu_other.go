//go:build !linux

package benchrun

import "time"

// ProcessCPU is not measured off Linux: it returns 0, and the CPU figures
// are left 0.
func ProcessCPU() time.Duration { return 0 }
