package zklock

// Waiting returns how many Acquire calls wait on the attempt of (name,
// guid), so tests can tell that a retried Acquire has joined.
func (l *Locker) Waiting(name, guid string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.slots[slotKey(name, guid)]; s != nil {
		return s.refs
	}
	return 0
}

// EscapeName exposes escapeName to the external tests, which find nodes
// by path.
func EscapeName(name string) string { return escapeName(name) }
