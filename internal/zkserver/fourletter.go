package zkserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// FourLetter sends one of ZooKeeper's four-letter-word commands ("ruok",
// "srvr", "mntr", "stat", ...) to the server at addr and returns its answer.
// The server must allow the command (4lw.commands.whitelist); servers this
// package starts allow all of them. A command the server refuses comes back
// as its explanatory text, not as an error.
func FourLetter(ctx context.Context, addr, cmd string) (string, error) {
	if len(cmd) != 4 {
		return "", fmt.Errorf("zkserver: four-letter word %q is not four letters", cmd)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("zkserver: %s %s: %w", cmd, addr, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("zkserver: %s %s: %w", cmd, addr, err)
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("zkserver: %s %s: %w", cmd, addr, err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return "", fmt.Errorf("zkserver: %s %s: %w", cmd, addr, err)
	}
	return string(b), nil
}

// ParseStats reads the "key: value" lines of a "srvr" answer, or the
// "key<TAB>value" lines of a "mntr" answer, into a map. Lines of neither
// shape are ignored.
func ParseStats(answer string) map[string]string {
	out := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(answer))
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, "\t"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}
