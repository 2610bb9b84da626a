package registry

import "errors"

// Errors returned by this package; test for them with errors.Is.
var (
	// ErrInvalidName reports a service name or instance id that cannot be
	// a path element (see ValidateName).
	ErrInvalidName = errors.New("registry: invalid name")
	// ErrInvalidInstance reports an instance record that is incomplete or
	// inconsistent (no address, a change of id or service on Update).
	ErrInvalidInstance = errors.New("registry: invalid instance")
	// ErrBadRecord reports node data that is not an instance record of
	// this registry, written by someone else or by a broken writer.
	ErrBadRecord = errors.New("registry: malformed instance record")
	// ErrNoService reports a service that has never registered an
	// instance (a service whose instances all left is known, and empty).
	ErrNoService = errors.New("registry: no such service")
	// ErrConflict reports that another live session holds the node of an
	// instance id: two instances were given the same id.
	ErrConflict = errors.New("registry: instance id is held by another live session")
	// ErrNotConnected reports a call made while ZooKeeper is unreachable.
	ErrNotConnected = errors.New("registry: not connected to ZooKeeper")
	// ErrClosed reports a call on a closed Client or a deregistered
	// Registration.
	ErrClosed = errors.New("registry: closed")
)
