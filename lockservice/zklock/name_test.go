package zklock

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "orders", true},
		{"path", "orders/42", true},
		{"deep", "a/b/c/d", true},
		{"unicode", "zürich/🍕", true},
		{"percent", "50%", true},
		{"space", "a b", true},
		{"dots in a segment", "a/.b/c..", true},
		{"three dots", "...", true},
		{"longest", strings.Repeat("x", MaxNameLen), true},
		{"empty", "", false},
		{"absolute", "/orders", false},
		{"trailing slash", "orders/", false},
		{"double slash", "a//b", false},
		{"dot", ".", false},
		{"dotdot", "..", false},
		{"dot segment", "a/./b", false},
		{"dotdot segment", "a/../b", false},
		{"leading dotdot", "../a", false},
		{"nul", "a\x00b", false},
		{"tab", "a\tb", false},
		{"newline", "a\n", false},
		{"del", "a\x7f", false},
		{"c1 control", "a\u0085", false},
		{"invalid utf8", "a\xffb", false},
		{"too long", strings.Repeat("x", MaxNameLen+1), false},
		{"too long in runes", strings.Repeat("ü", MaxNameLen/2+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateName(%q) = %v, not ErrInvalidName", tt.in, err)
			}
		})
	}
}

func TestEscapeName(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "orders", "orders"},
		{"slash", "orders/42", "orders%2F42"},
		{"percent", "50%", "50%25"},
		{"escaped-looking", "a%2Fb", "a%252Fb"},
		{"latin", "zürich", "zürich"},
		{"outside the BMP", "🍕", "%F0%9F%8D%95"},
		{"private use", "\ue000", "%EE%80%80"},
		{"specials", "\ufff0", "%EF%BF%B0"},
		{"dots", "...", "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapeName(tt.in); got != tt.want {
				t.Fatalf("escapeName(%q) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := unescapeName(tt.want)
			if err != nil || back != tt.in {
				t.Fatalf("unescapeName(%q) = %q, %v; want %q", tt.want, back, err, tt.in)
			}
		})
	}
	if escapeName("a") == escapeName("a/b") || strings.Contains(escapeName("a/b"), "/") {
		t.Fatal(`"a" and "a/b" must be distinct single znode names`)
	}
}

func TestUnescapeNameRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"raw slash", "a/b"},
		{"lower-case hex", "a%2fb"},
		{"truncated", "a%2"},
		{"truncated at the end", "a%"},
		{"not hex", "a%zzb"},
		{"needless escape", "%41"},
		{"escaped dotdot", "%2E%2E"},
		{"escaped control", "%00"},
		{"broken utf8", "%F0%9F"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := unescapeName(tt.in); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("unescapeName(%q) = %q, %v; want ErrInvalidName", tt.in, got, err)
			}
		})
	}
}

// checkZnodeName fails if s cannot be one path element in ZooKeeper.
func checkZnodeName(t *testing.T, s string) {
	t.Helper()
	if s == "" || s == "." || s == ".." || strings.Contains(s, "/") || !utf8.ValidString(s) || strings.ContainsFunc(s, zkRefuses) {
		t.Fatalf("%q is not a valid znode name", s)
	}
}

func FuzzEscapeName(f *testing.F) {
	for _, s := range []string{"orders/42", "a", "a/b", "50%", "a%2Fb", "zürich/🍕", "\ue000/\ufff0", "...", "a/.b", strings.Repeat("é", 128), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		e := escapeName(name)
		checkZnodeName(t, e)
		back, err := unescapeName(e)
		if err != nil || back != name {
			t.Fatalf("unescapeName(escapeName(%q)) = %q, %v", name, back, err)
		}
		for i := range name { // at every rune boundary
			if !strings.HasPrefix(e, escapeName(name[:i])) {
				t.Fatalf("escapeName(%q) is not a prefix of escapeName(%q)", name[:i], name)
			}
		}
	})
}

func FuzzUnescapeName(f *testing.F) {
	for _, s := range []string{"orders%2F42", "a", "50%25", "%F0%9F%8D%95", "a%2fb", "%41", "%", "%2E%2E", "_c_x-lock-0000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, e string) {
		name, err := unescapeName(e)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("unescapeName(%q): %v, not ErrInvalidName", e, err)
			}
			return
		}
		if err := ValidateName(name); err != nil {
			t.Fatalf("unescapeName(%q) = %q, which is invalid: %v", e, name, err)
		}
		if got := escapeName(name); got != e {
			t.Fatalf("escapeName(unescapeName(%q)) = %q: two znode names for one lock", e, got)
		}
	})
}

func TestValidateGUID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"hex uuid", "0123456789abcdef0123456789abcdef", true},
		{"base32", NewGUID(), true},
		{"shortest", strings.Repeat("a", MinGUIDLen), true},
		{"longest", strings.Repeat("Z", MaxGUIDLen), true},
		{"empty", "", false},
		{"too short", strings.Repeat("a", MinGUIDLen-1), false},
		{"too long", strings.Repeat("a", MaxGUIDLen+1), false},
		{"dashes", "01234567-89ab-cdef-0123-456789abcdef", false},
		{"lock infix", "aaaaaaaaaaaaaaaa-lock-", false},
		{"unicode", "ü123456789abcdef0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateGUID(tt.in)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidGUID)) {
				t.Fatalf("ValidateGUID(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestQueue(t *testing.T) {
	g1, g2 := strings.Repeat("a", 16), strings.Repeat("b", 16)
	children := []string{
		"_c_" + g2 + "-lock-0000000012",
		"foreign",
		"_c_" + g1 + "-lock-0000000003",
		"_c_short-lock-0000000001",
		"_c_" + g1 + "-lock-12",
		"lock-0000000000",
		"_c_" + g1 + "-lock-0000000010",
	}
	q := queue(children)
	var got []int64
	for _, c := range q {
		got = append(got, c.seq)
	}
	if len(q) != 3 || got[0] != 3 || got[1] != 10 || got[2] != 12 || q[0].guid != g1 || q[2].guid != g2 {
		t.Fatalf("queue = %+v, want seqs 3 (%s), 10, 12 (%s)", q, g1, g2)
	}
}
