package registry_test

import (
	"fmt"
	"strings"
)

// watchesOf reads "wchc" output (a session id line, then a tab-indented
// line per watched path) and returns the paths watched by session.
func watchesOf(wchc string, session int64) []string {
	var out []string
	mine := false
	for _, line := range strings.Split(wchc, "\n") {
		if strings.HasPrefix(line, "\t") {
			if mine {
				out = append(out, strings.TrimSpace(line))
			}
			continue
		}
		mine = strings.TrimSpace(line) == fmt.Sprintf("0x%x", session)
	}
	return out
}
