package lockmq

// Waiting returns how many acquires with request id rid wait at d, so
// that a test can know a wait has begun (and holds its in-flight slot)
// before it acts on it.
func (d *Door) Waiting(rid string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.waiting[rid])
}
