package registry

import (
	"fmt"
	"net"
	"strconv"
	"unicode"
	"unicode/utf8"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// MaxNameLen is the longest service name or instance id, in bytes.
const MaxNameLen = 255

// Root is the znode under which every service lives.
const Root = "/switchyard/services"

// ValidateName checks that s can be a service name or instance id: one
// znode path element of 1 to MaxNameLen bytes of UTF-8, without "/", not
// "." or "..", and without the control and non-character code points that
// ZooKeeper rejects in paths.
func ValidateName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrInvalidName, len(s), MaxNameLen)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %q", ErrInvalidName, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidName, s)
	}
	for _, r := range s {
		switch {
		case r == '/':
			return fmt.Errorf("%w: %q contains '/'", ErrInvalidName, s)
		case unicode.IsControl(r), r >= 0xd800 && r <= 0xf8ff, r >= 0xfff0:
			return fmt.Errorf("%w: %q contains the character %U", ErrInvalidName, s, r)
		}
	}
	return nil
}

// validateInstance checks the fields a record must have.
func validateInstance(inst *registryv1.Instance) error {
	if err := ValidateName(inst.GetService()); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := ValidateName(inst.GetId()); err != nil {
		return fmt.Errorf("instance id: %w", err)
	}
	host, port, err := net.SplitHostPort(inst.GetAddress())
	if err != nil || host == "" {
		return fmt.Errorf("%w: address %q is not host:port", ErrInvalidInstance, inst.GetAddress())
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%w: address %q has no valid port", ErrInvalidInstance, inst.GetAddress())
	}
	if _, ok := registryv1.InstanceState_name[int32(inst.GetState())]; !ok {
		return fmt.Errorf("%w: unknown state %d", ErrInvalidInstance, inst.GetState())
	}
	return nil
}

func servicePath(service string) string   { return Root + "/" + service }
func instancesPath(service string) string { return servicePath(service) + "/instances" }
func instancePath(service, id string) string {
	return instancesPath(service) + "/" + id
}
