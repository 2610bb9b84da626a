package zklock

import (
	"cmp"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest lock name, in bytes of UTF-8.
const MaxNameLen = 256

// MinGUIDLen and MaxGUIDLen bound the length of a contender GUID.
const (
	MinGUIDLen = 16
	MaxGUIDLen = 64
)

// MaxDataLen is the most data a contender node carries, in bytes.
const MaxDataLen = 64 << 10

// DefaultRoot is the znode under which every lock lives (WithRoot changes
// it).
const DefaultRoot = "/switchyard/locks"

// ValidateName checks that name can name a lock: a relative path of 1 to
// MaxNameLen bytes of UTF-8 ("orders/42"), whose segments are not empty
// (no leading, trailing or doubled "/") and not "." or "..", without
// control characters. Every valid name has a distinct znode (see
// escapeName); the error wraps ErrInvalidName.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidName, name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%w: %q is absolute, want a relative path", ErrInvalidName, name)
	}
	if err := validateChars(name); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: %q has an empty path segment", ErrInvalidName, name)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidName, name, seg)
		}
	}
	return nil
}

// ValidatePrefix checks a name prefix (of List, or a watch): like a name,
// but it may be empty and end anywhere ("orders/", "ord"). The error wraps
// ErrInvalidName.
func ValidatePrefix(prefix string) error {
	switch {
	case len(prefix) > MaxNameLen:
		return fmt.Errorf("%w: prefix of %d bytes, over the limit of %d", ErrInvalidName, len(prefix), MaxNameLen)
	case !utf8.ValidString(prefix):
		return fmt.Errorf("%w: prefix %q is not UTF-8", ErrInvalidName, prefix)
	case strings.HasPrefix(prefix, "/"):
		return fmt.Errorf("%w: prefix %q is absolute, want a relative path", ErrInvalidName, prefix)
	}
	return validateChars(prefix)
}

func validateChars(s string) error {
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %q contains the control character %U", ErrInvalidName, s, r)
		}
	}
	return nil
}

// escapeName turns a valid name into one znode name, reversibly
// (unescapeName) and readably: "%" and "/" become "%25" and "%2F", and so
// do, byte by byte of their UTF-8, the characters ZooKeeper refuses in a
// path (U+D800 to U+F8FF, and from U+FFF0 on, which includes everything
// outside the Basic Multilingual Plane: Java sees surrogates there). All
// else is kept. The escaping works rune by rune, so the escape of a prefix
// is a prefix of the escape, and "a" and "a/b" are "a" and "a%2Fb": one
// lock's directory is never inside another's.
func escapeName(name string) string {
	if !strings.ContainsFunc(name, mustEscape) {
		return name
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(name) + 8)
	for _, r := range name {
		if !mustEscape(r) {
			b.WriteRune(r)
			continue
		}
		var buf [utf8.UTFMax]byte
		for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

func mustEscape(r rune) bool { return r == '%' || r == '/' || zkRefuses(r) }

// zkRefuses reports whether ZooKeeper refuses r in a path: controls, and
// what Java's UTF-16 has from U+D800 to U+F8FF and from U+FFF0 on.
func zkRefuses(r rune) bool {
	return unicode.IsControl(r) || (r >= 0xd800 && r <= 0xf8ff) || r >= 0xfff0
}

// unescapeName reverses escapeName. It accepts only what escapeName
// produces for a valid name (upper-case hex, nothing escaped that need not
// be), so that each lock has exactly one znode name; anything else, such
// as a node someone else created under the root, wraps ErrInvalidName.
func unescapeName(s string) (string, error) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		if s[i] != '%' {
			b = append(b, s[i])
			i++
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("%w: %q has a truncated escape", ErrInvalidName, s)
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: %q has a bad escape %q", ErrInvalidName, s, s[i:i+3])
		}
		b = append(b, byte(hi<<4|lo))
		i += 3
	}
	name := string(b)
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if escapeName(name) != s {
		return "", fmt.Errorf("%w: %q is not an escaped lock name", ErrInvalidName, s)
	}
	return name, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// ValidateGUID checks that guid can name a contender: MinGUIDLen to
// MaxGUIDLen ASCII letters and digits (a hex UUID without dashes, a
// request id, NewGUID). Case matters. The error wraps ErrInvalidGUID.
func ValidateGUID(guid string) error {
	if len(guid) < MinGUIDLen || len(guid) > MaxGUIDLen {
		return fmt.Errorf("%w: %d characters, want %d to %d", ErrInvalidGUID, len(guid), MinGUIDLen, MaxGUIDLen)
	}
	for i := range len(guid) {
		if c := guid[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return fmt.Errorf("%w: %q has %q, want only letters and digits", ErrInvalidGUID, guid, c)
		}
	}
	return nil
}

// NewGUID returns a random GUID (128 bits, 26 characters) for a caller
// that has no request id to derive one from.
func NewGUID() string { return rand.Text() }

// Contender node names, as Curator's protected creates: "_c_<guid>-lock-"
// to which ZooKeeper appends a ten-digit sequence number.
const (
	guidPrefix = "_c_"
	lockInfix  = "-lock-"
)

func contenderPrefix(guid string) string { return guidPrefix + guid + lockInfix }

// contender is a child of a lock directory that is a contender node.
type contender struct {
	node string // the child's name
	guid string
	seq  int64
}

// parseContender reads a child name; ok is false for any other node.
func parseContender(child string) (c contender, ok bool) {
	rest, ok := strings.CutPrefix(child, guidPrefix)
	if !ok {
		return c, false
	}
	guid, seq, ok := strings.Cut(rest, lockInfix)
	if !ok || ValidateGUID(guid) != nil || len(seq) < 10 {
		return c, false
	}
	n, err := strconv.ParseInt(seq, 10, 32)
	if err != nil {
		return c, false
	}
	return contender{node: child, guid: guid, seq: n}, true
}

// queue returns the contender nodes among children, lowest sequence (the
// holder) first.
func queue(children []string) []contender {
	q := make([]contender, 0, len(children))
	for _, child := range children {
		if c, ok := parseContender(child); ok {
			q = append(q, c)
		}
	}
	slices.SortFunc(q, func(a, b contender) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), strings.Compare(a.node, b.node))
	})
	return q
}
