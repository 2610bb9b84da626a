package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/internal/zkserver"
)

// zkEnv names the environment variable that `yard up` prints an export line
// for; the zk commands take their connect string from it when --zk is not
// given.
const zkEnv = "SWITCHYARD_ZK"

// notServingAnswer is what a ZooKeeper server answers to srvr and mntr
// while it has no quorum (it is electing a leader, or cannot reach a
// majority): it runs, but serves no client.
const notServingAnswer = "This ZooKeeper instance is not currently serving requests"

// Modes a row can show besides the ones a server reports of itself
// (standalone, leader, follower, observer, read-only).
const (
	modeDown       = "down"        // no answer: refused, reset or timed out
	modeNotServing = "not serving" // answers, but has no quorum
	modeUnknown    = "unknown"     // answers srvr without a Mode line
)

// serverStatus is one server's row of `yard zk status`, and in JSON the
// documented, stable shape of -o json: every key is always present except
// error (set only for a server that does not serve) and followers and
// synced_followers (set only for a leader). A number the server did not
// report is null rather than 0, so a script can tell "none" from "unknown".
type serverStatus struct {
	Address         string   `json:"address"`
	Mode            string   `json:"mode"`
	Zxid            string   `json:"zxid"`
	Connections     *int64   `json:"connections"`
	Outstanding     *int64   `json:"outstanding"`
	LatencyMinMS    *int64   `json:"latency_min_ms"`
	LatencyAvgMS    *float64 `json:"latency_avg_ms"`
	LatencyMaxMS    *int64   `json:"latency_max_ms"`
	ZnodeCount      *int64   `json:"znode_count"`
	WatchCount      *int64   `json:"watch_count"`
	EphemeralsCount *int64   `json:"ephemerals_count"`
	Followers       *int64   `json:"followers,omitempty"`
	SyncedFollowers *int64   `json:"synced_followers,omitempty"`
	Version         string   `json:"version"`
	Error           string   `json:"error,omitempty"`
}

// serving reports whether the server answered and serves clients.
func (s serverStatus) serving() bool { return s.Error == "" }

func newZKCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "zk",
		Short: "Inspect a ZooKeeper ensemble",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newZKStatusCmd())
	return cmd
}

func newZKStatusCmd() *cobra.Command {
	var (
		zk      string
		output  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the mode, zxid and load of every ZooKeeper server",
		Long: `status asks every server of a ZooKeeper connect string, all at once, for
its "srvr" and "mntr" four-letter-word answers and prints one row per
server, in connect-string order.

The connect string comes from --zk, or else from $SWITCHYARD_ZK, which
` + "`yard up`" + ` prints an export line for. A chroot suffix ("/app") is refused.

A server that does not answer within --timeout is "down"; one that answers
but has no quorum is "not serving". Either gets an error and the others are
still shown. The exit status is 0 only when every server serves; otherwise
yard prints the rows and then fails with "N of M servers not serving".

-o json prints a JSON array, one object per server:

  address           string  host:port as given
  mode              string  standalone, leader, follower, observer,
                            read-only, down, not serving, or unknown
  zxid              string  last zxid seen, "0x..." (srvr Zxid)
  connections       number  open client connections (srvr Connections),
                            counting this command's own one or two
  outstanding       number  queued requests (srvr Outstanding)
  latency_min_ms    number  request latency in ms (srvr Latency min/avg/max)
  latency_avg_ms    number
  latency_max_ms    number
  znode_count       number  (mntr zk_znode_count, else srvr Node count)
  watch_count       number  (mntr zk_watch_count)
  ephemerals_count  number  (mntr zk_ephemerals_count)
  followers         number  leader only: followers connected
                            (mntr zk_followers, or zk_learners since 3.6)
  synced_followers  number  leader only (mntr zk_synced_followers)
  version           string  server version (mntr zk_version, else srvr)
  error             string  only when the server is not serving: why

Every key but error, followers and synced_followers is always present; a
value the server did not report is "" or null. mntr fields are null when the
server refuses mntr (4lw.commands.whitelist).`,
		Example: `  yard zk status
  yard zk status --zk 127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := zkAddrs(zk, cmd.Flags().Changed("zk"))
			if err != nil {
				return err
			}
			var write func(io.Writer, []serverStatus) error
			switch output {
			case "table":
				write = writeStatusTable
			case "json":
				write = writeStatusJSON
			default:
				return fmt.Errorf("-o %q: unknown output format, want table or json", output)
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %v: want a positive duration", timeout)
			}

			ctx := cmd.Context()
			rows := zkStatus(ctx, addrs, timeout)
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("zk status: %w", err)
			}
			if err := write(cmd.OutOrStdout(), rows); err != nil {
				return fmt.Errorf("zk status: writing output: %w", err)
			}
			bad := 0
			for _, r := range rows {
				if !r.serving() {
					bad++
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d servers not serving", bad, len(rows))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&zk, "zk", "", "ZooKeeper connect string host:port[,host:port...] (default $"+zkEnv+")")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for each server's answers")
	return cmd
}

// zkAddrs returns the server addresses of the --zk flag if it was given
// (even empty), or else of $SWITCHYARD_ZK, and says which one is at fault
// when they are missing or malformed.
func zkAddrs(flag string, flagGiven bool) ([]string, error) {
	if flagGiven {
		addrs, err := zkconn.ParseConnectString(flag)
		if err != nil {
			return nil, fmt.Errorf("--zk %q: %w", flag, err)
		}
		return addrs, nil
	}
	env := os.Getenv(zkEnv)
	if env == "" {
		return nil, fmt.Errorf("no ZooKeeper given: pass --zk host:port[,host:port...], or run `yard up` and export the %s it prints", zkEnv)
	}
	addrs, err := zkconn.ParseConnectString(env)
	if err != nil {
		return nil, fmt.Errorf("$%s %q: %w", zkEnv, env, err)
	}
	return addrs, nil
}

// zkStatus asks every server for srvr and mntr at once, giving each server
// timeout for both, and returns one row per address in the same order. It
// never fails: a server that cannot be asked is a row with an error. When
// ctx ends first, the rows of the servers not yet heard from say so.
func zkStatus(ctx context.Context, addrs []string, timeout time.Duration) []serverStatus {
	rows := make([]serverStatus, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() { rows[i] = queryServer(ctx, addr, timeout) })
	}
	wg.Wait()
	return rows
}

// queryServer sends srvr and mntr to addr concurrently, both bounded by
// timeout, and makes a row of the answers.
func queryServer(ctx context.Context, addr string, timeout time.Duration) serverStatus {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		srvr, mntr       string
		srvrErr, mntrErr error
		wg               sync.WaitGroup
	)
	wg.Go(func() { srvr, srvrErr = zkserver.FourLetter(ctx, addr, "srvr") })
	wg.Go(func() { mntr, mntrErr = zkserver.FourLetter(ctx, addr, "mntr") })
	wg.Wait()
	if mntrErr != nil {
		mntr = "" // mntr only adds detail; srvr decides whether the server serves
	}
	return statusFromAnswers(addr, srvr, srvrErr, mntr)
}

// statusFromAnswers makes a row from a server's srvr answer (or the error
// asking for it) and its mntr answer ("" when there is none). srvr decides
// the mode: mntr is optional (it may be refused by the whitelist, and
// zk_server_state does not say "not serving").
func statusFromAnswers(addr, srvr string, srvrErr error, mntr string) serverStatus {
	row := serverStatus{Address: addr}
	switch {
	case srvrErr != nil:
		row.Mode = modeDown
		row.Error = srvrErr.Error()
		return row
	case strings.Contains(srvr, notServingAnswer):
		row.Mode = modeNotServing
		row.Error = "server is running but not serving requests (no quorum: it is electing a leader or cannot reach a majority)"
		return row
	}
	s := zkserver.ParseStats(srvr)
	if s["Mode"] == "" {
		row.Mode = modeUnknown
		first, _, _ := strings.Cut(strings.TrimSpace(srvr), "\n")
		if first == "" {
			first = "nothing"
		}
		row.Error = fmt.Sprintf("srvr answered %q, which has no Mode line", first)
		return row
	}
	row.Mode = s["Mode"]
	row.Zxid = s["Zxid"]
	row.Version = s["Zookeeper version"]
	row.Connections = parseInt(s["Connections"])
	row.Outstanding = parseInt(s["Outstanding"])
	row.ZnodeCount = parseInt(s["Node count"])
	if parts := strings.Split(s["Latency min/avg/max"], "/"); len(parts) == 3 {
		row.LatencyMinMS = parseInt(parts[0])
		row.LatencyAvgMS = parseFloat(parts[1])
		row.LatencyMaxMS = parseInt(parts[2])
	}

	if strings.Contains(mntr, notServingAnswer) {
		return row // lost its quorum between the two answers; srvr's word stands
	}
	m := zkserver.ParseStats(mntr)
	if v := m["zk_version"]; v != "" {
		row.Version = v
	}
	if n := parseInt(m["zk_znode_count"]); n != nil {
		row.ZnodeCount = n
	}
	row.WatchCount = parseInt(m["zk_watch_count"])
	row.EphemeralsCount = parseInt(m["zk_ephemerals_count"])
	if row.Mode == "leader" {
		// ZooKeeper 3.6 replaced zk_followers with zk_learners
		// (followers and observers).
		row.Followers = parseInt(m["zk_followers"])
		if row.Followers == nil {
			row.Followers = parseInt(m["zk_learners"])
		}
		row.SyncedFollowers = parseInt(m["zk_synced_followers"])
	}
	return row
}

// parseInt returns the integer in s, or nil when s is not one.
func parseInt(s string) *int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return nil
	}
	return &n
}

// parseFloat returns the number in s, or nil when s is not one.
func parseFloat(s string) *float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return nil
	}
	return &f
}

func writeStatusJSON(w io.Writer, rows []serverStatus) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// writeStatusTable prints the rows as aligned columns, "-" for what a
// server did not report. FOLLOWERS is synced/connected, on the leader.
func writeStatusTable(w io.Writer, rows []serverStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tMODE\tZXID\tCONNS\tOUTSTANDING\tLATENCY MS MIN/AVG/MAX\tZNODES\tWATCHES\tEPHEMERALS\tFOLLOWERS\tVERSION\tERROR")
	for _, r := range rows {
		latency := "-"
		if r.LatencyMinMS != nil || r.LatencyAvgMS != nil || r.LatencyMaxMS != nil {
			latency = num(r.LatencyMinMS) + "/" + numf(r.LatencyAvgMS) + "/" + num(r.LatencyMaxMS)
		}
		followers := "-"
		if r.Followers != nil || r.SyncedFollowers != nil {
			followers = num(r.SyncedFollowers) + "/" + num(r.Followers)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Address, r.Mode, orDash(r.Zxid), num(r.Connections), num(r.Outstanding), latency,
			num(r.ZnodeCount), num(r.WatchCount), num(r.EphemeralsCount), followers,
			orDash(shortVersion(r.Version)), orDash(r.Error))
	}
	return tw.Flush()
}

// shortVersion keeps the release number of a version string such as
// "3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC"; JSON has it whole.
func shortVersion(v string) string {
	if i := strings.IndexAny(v, "-, "); i >= 0 {
		return v[:i]
	}
	return v
}

func num(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

func numf(f *float64) string {
	if f == nil {
		return "-"
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
