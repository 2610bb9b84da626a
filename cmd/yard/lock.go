package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// lockServiceName is the lock service's name in the registry.
var lockServiceName = lockservice.ServiceName

// contenderJSON is a holder or waiter as `yard lock ls` and show print it
// with -o json: the documented, stable shape, every key always present.
type contenderJSON struct {
	Owner     string `json:"owner"`
	Replica   string `json:"replica"`
	Token     uint64 `json:"token"`
	RequestID string `json:"request_id"`
	Since     string `json:"since"`
	TTLMS     int64  `json:"ttl_ms"`
}

// lockSummaryJSON is one lock of `yard lock ls -o json`.
type lockSummaryJSON struct {
	Name    string         `json:"name"`
	Holder  *contenderJSON `json:"holder"`
	Waiters uint32         `json:"waiters"`
}

// lockJSON is `yard lock show -o json`.
type lockJSON struct {
	Name    string          `json:"name"`
	Holder  *contenderJSON  `json:"holder"`
	Waiters []contenderJSON `json:"waiters"`
}

// acquireEvent is one line of `yard lock acquire -o json`. Every key is
// always present; the ones an event has no value for are zero.
type acquireEvent struct {
	Event    string `json:"event"`
	Name     string `json:"name"`
	Token    uint64 `json:"token"`
	Replica  string `json:"replica"`
	Owner    string `json:"owner"`
	TTLMS    int64  `json:"ttl_ms"`
	WaitedMS int64  `json:"waited_ms"`
	HeldMS   int64  `json:"held_ms"`
}

func newLockCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Take, list and show locks of the lock service",
		Long: `lock talks to the lock service (` + lockServiceName + `) as a client
does: through the registry in ZooKeeper to a replica that ` + "`yard serve lock`" + `
runs, never to ZooKeeper's lock nodes directly.

Every subcommand takes its connect string from --zk, or else from
$SWITCHYARD_ZK, which ` + "`yard up`" + ` prints an export line for. It fails when it
has no ZooKeeper session within --timeout, and when no replica is
registered and serving (the service is then unavailable). Flags are checked
before yard connects anywhere.

Lock names are relative paths such as orders/42: 1 to 256 bytes of UTF-8,
no empty, "." or ".." segment, no leading or trailing "/", no control
characters. The service checks them and refuses others ("invalid
argument").`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newLockAcquireCmd(), newLockLsCmd(), newLockShowCmd())
	return cmd
}

// lockConn is a connection to the lock service through the registry. Its
// calls have no default deadline: each caller gives its own.
type lockConn struct {
	reg  *registry.Client
	conn *grpc.ClientConn
	api  lockv1.LockServiceClient
}

// dialLock connects to the registry within ctx and makes a client of the
// lock service over it. The rpc client logs only errors, to stderr: the
// commands report the failures of their calls themselves.
func dialLock(ctx context.Context, cmd *cobra.Command, f *registryFlags, connect string) (*lockConn, error) {
	reg, err := f.dial(ctx, cmd, connect)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelError}))
	conn, err := rpc.NewClient(reg, lockServiceName,
		rpc.WithDefaultTimeout(0), rpc.WithClientLogger(log), rpc.WithClientMetrics(nil))
	if err != nil {
		reg.Close()
		return nil, err
	}
	return &lockConn{reg: reg, conn: conn, api: lockv1.NewLockServiceClient(conn)}, nil
}

// Close closes the gRPC connection, then the registry session.
func (c *lockConn) Close() {
	c.conn.Close()
	c.reg.Close()
}

// serviceError is a failure the lock service (or the way to it) reported,
// with the message a person reads; Unwrap returns the gRPC status error.
type serviceError struct {
	msg string
	err error
}

func (e *serviceError) Error() string { return e.msg }
func (e *serviceError) Unwrap() error { return e.err }

// callError turns err, from a call about name ("" for none) bounded by
// --timeout, into a readable error: the gRPC code in words, then the
// service's own message. It maps every code in this one place.
func callError(err error, name string, timeout time.Duration) error {
	var se interface{ GRPCStatus() *status.Status }
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
	case errors.Is(err, context.DeadlineExceeded):
		return &serviceError{msg: fmt.Sprintf("the lock service did not answer within --timeout %v", timeout), err: err}
	default:
		return err
	}
	st := se.GRPCStatus()
	msg := st.Message()
	var text string
	switch st.Code() {
	case codes.InvalidArgument:
		text = "invalid argument: " + msg
	case codes.NotFound:
		text = "no such lock: " + name
	case codes.Aborted:
		text = fmt.Sprintf("lock %s is held by someone else", name)
	case codes.Unavailable:
		text = "the lock service is unavailable (is a `yard serve lock` replica registered and serving?): " + msg
	case codes.DeadlineExceeded:
		text = fmt.Sprintf("the lock service did not answer within --timeout %v", timeout)
	case codes.ResourceExhausted:
		text = "the lock service is at a limit: " + msg
	case codes.PermissionDenied:
		text = "permission denied: " + msg
	case codes.FailedPrecondition:
		text = "refused: " + msg
	case codes.Canceled:
		text = "interrupted"
	default:
		text = fmt.Sprintf("the lock service failed (%v): %s", st.Code(), msg)
	}
	return &serviceError{msg: text, err: err}
}

func newLockAcquireCmd() *cobra.Command {
	var (
		f     registryFlags
		ttl   time.Duration
		hold  time.Duration
		wait  bool
		owner string
	)
	cmd := &cobra.Command{
		Use:   "acquire NAME",
		Short: "Take a lock, print its fencing token, hold it, release it",
		Long: `acquire takes the lock NAME through the lock service, prints its fencing
token and the replica that holds the lease, holds it for --hold (0: until
Ctrl-C or SIGTERM) while renewing the lease at about a third of its
validity, then releases it, says so, and exits 0.

It waits in line while someone else holds the lock, until Ctrl-C, which
gives up the wait (its place in line is removed) and exits 1. With
--wait=false it is a try-lock: a lock held by someone else makes it fail at
once with exit status 1, naming the holder.

If the lock is lost while held (renewals failed until the lease ran out,
or the service says the lease is gone: its replica stopped or lost its
ZooKeeper session) yard says so on stderr and exits 1 without releasing.
The fencing token is what a resource the lock guards should check: it
strictly increases over every grant of the lock.

The lease validity asked for is --ttl, from ` + lockservice.MinTTL.String() + ` to ` + lockservice.MaxTTL.String() + `; a replica grants
at most its ZooKeeper session timeout. --timeout bounds the ZooKeeper
session and the first call to the service, not the wait in line.

-o json prints one JSON object per line (JSON Lines), with every key
present; keys an event does not set are 0 or "":

  event      string  "acquired", then "released"
  name       string  the lock's name
  token      number  the fencing token
  replica    string  instance id of the replica that holds the lease
  owner      string  the owner the lock was taken as (--owner)
  ttl_ms     number  acquired: the validity granted, in milliseconds
  waited_ms  number  acquired: how long the replica waited in line
  held_ms    number  released: how long yard held the lock`,
		Example: `  yard lock acquire orders/42 --hold 5s
  yard lock acquire orders/42 --wait=false || echo "someone holds it"
  yard lock acquire nightly/report --ttl 30s -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			if ttl < lockservice.MinTTL || ttl > lockservice.MaxTTL {
				return fmt.Errorf("--ttl %v: want %v to %v", ttl, lockservice.MinTTL, lockservice.MaxTTL)
			}
			if hold < 0 {
				return fmt.Errorf("--hold %v: want 0 (until Ctrl-C) or a positive duration", hold)
			}
			if !cmd.Flags().Changed("owner") {
				owner = defaultOwner()
			}
			if len(owner) > lockservice.MaxOwnerLen || !utf8.ValidString(owner) {
				return fmt.Errorf("--owner: want at most %d bytes of UTF-8", lockservice.MaxOwnerLen)
			}
			return acquire(cmd, &f, connect, acquireArgs{name: args[0], ttl: ttl, hold: hold, wait: wait, owner: owner})
		},
	}
	f.add(cmd, "how long to wait for a ZooKeeper session and the lock service's first answer")
	fl := cmd.Flags()
	fl.DurationVar(&ttl, "ttl", lockservice.DefaultTTL, "lease validity to ask for; the watchdog renews it")
	fl.DurationVar(&hold, "hold", 0, "how long to hold the lock once acquired (0: until Ctrl-C)")
	fl.BoolVar(&wait, "wait", true, "wait in line while the lock is held; false fails at once")
	fl.StringVar(&owner, "owner", "", "who holds the lock, as ls and show print it (default host:pid)")
	return cmd
}

// defaultOwner is the owner lockclient would use: host:pid.
func defaultOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

type acquireArgs struct {
	name  string
	ttl   time.Duration
	hold  time.Duration
	wait  bool
	owner string
}

// acquire runs `yard lock acquire` once its flags are checked.
func acquire(cmd *cobra.Command, f *registryFlags, connect string, a acquireArgs) error {
	ctx := cmd.Context()
	first, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	lc, err := dialLock(first, cmd, f, connect)
	if err != nil {
		return fmt.Errorf("lock acquire: %w", err)
	}
	defer lc.Close()

	// lockclient retries an unavailable service until its context ends,
	// as a waiting acquire should; so first ask the service, within
	// --timeout, whether it is there and takes the name.
	if _, err := lc.api.Describe(first, &lockv1.DescribeRequest{Name: a.name}); err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("lock acquire %q: %w", a.name, callError(err, a.name, f.timeout))
	}

	warnLog := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	client := lockclient.New(lockclient.GRPC(lc.conn), lockclient.WithLogger(warnLog))
	opts := []lockclient.Option{lockclient.WithTTL(a.ttl), lockclient.WithOwner(a.owner)}
	var l *lockclient.Lock
	if a.wait {
		l, err = client.Lock(ctx, a.name, opts...) // in line until granted or Ctrl-C
	} else {
		tctx, cancel := context.WithTimeout(ctx, f.timeout)
		l, err = client.TryLock(tctx, a.name, opts...)
		cancel()
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return fmt.Errorf("lock acquire %q: gave up waiting: interrupted", a.name)
	case errors.Is(err, lockclient.ErrLocked):
		hctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		return fmt.Errorf("lock acquire %q: %w", a.name, &serviceError{msg: heldBy(hctx, lc, a.name), err: err})
	default:
		return fmt.Errorf("lock acquire %q: %w", a.name, callError(err, a.name, f.timeout))
	}
	acquired := time.Now()
	lease := l.Lease()
	out := cmd.OutOrStdout()
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
	defer cancel()
	if err := printAcquired(out, f.output, lease, a); err != nil {
		_ = l.Unlock(uctx)
		return fmt.Errorf("lock acquire: writing output: %w", err)
	}

	var expired <-chan time.Time
	if a.hold > 0 {
		t := time.NewTimer(a.hold)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-l.Lost():
		_ = l.Unlock(uctx) // marks it unlocked; the watchdog ended with the loss, and nothing is released
		return fmt.Errorf("lock %q (token %d) lost while held: %w", a.name, lease.GetToken(), l.Err())
	case <-expired:
	case <-ctx.Done():
	}

	// Unlocking gets --timeout of its own, even after Ctrl-C.
	uctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
	defer cancel()
	if err := l.Unlock(uctx); err != nil {
		if errors.Is(err, lockclient.ErrLost) {
			return fmt.Errorf("lock %q (token %d) lost while held: %w", a.name, lease.GetToken(), err)
		}
		return fmt.Errorf("lock release %q (token %d) failed; the lock is freed when its lease runs out, within %v: %w",
			a.name, lease.GetToken(), lease.GetTtl().AsDuration().Round(time.Millisecond), callError(err, a.name, f.timeout))
	}
	held := time.Since(acquired)
	if err := printReleased(out, f.output, lease, a, held); err != nil {
		return fmt.Errorf("lock acquire: writing output: %w", err)
	}
	return nil
}

// heldBy explains a failed try-lock, naming the holder when the service
// still has one to show.
func heldBy(ctx context.Context, lc *lockConn, name string) string {
	d, err := lc.api.Describe(ctx, &lockv1.DescribeRequest{Name: name})
	if err != nil || d.GetHolder() == nil {
		return "locked: held by someone else"
	}
	h := d.GetHolder()
	return fmt.Sprintf("locked: held by %s (token %d, replica %s)", orDash(h.GetOwner()), h.GetToken(), orDash(h.GetReplica()))
}

func printAcquired(w io.Writer, output string, lease *lockv1.Lease, a acquireArgs) error {
	ttl, waited := lease.GetTtl().AsDuration(), lease.GetWaited().AsDuration()
	if output == "json" {
		return json.NewEncoder(w).Encode(acquireEvent{
			Event: "acquired", Name: lease.GetName(), Token: lease.GetToken(), Replica: lease.GetReplica(),
			Owner: a.owner, TTLMS: ttl.Milliseconds(), WaitedMS: waited.Milliseconds(),
		})
	}
	until := "until Ctrl-C"
	if a.hold > 0 {
		until = "for " + a.hold.String() + " (Ctrl-C releases it sooner)"
	}
	_, err := fmt.Fprintf(w, "acquired %s: token %d, lease on replica %s, valid %v, waited %v\nholding it %s\n",
		lease.GetName(), lease.GetToken(), lease.GetReplica(), ttl.Round(time.Millisecond), waited.Round(time.Millisecond), until)
	return err
}

func printReleased(w io.Writer, output string, lease *lockv1.Lease, a acquireArgs, held time.Duration) error {
	if output == "json" {
		return json.NewEncoder(w).Encode(acquireEvent{
			Event: "released", Name: lease.GetName(), Token: lease.GetToken(), Replica: lease.GetReplica(),
			Owner: a.owner, HeldMS: held.Milliseconds(),
		})
	}
	_, err := fmt.Fprintf(w, "released %s: token %d, held %v\n", lease.GetName(), lease.GetToken(), held.Round(time.Millisecond))
	return err
}

func newLockLsCmd() *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List the locks that are held or waited for",
		Long: `ls lists the locks whose names start with PREFIX (default: all), sorted
by name, with each one's holder and how many wait in line. PREFIX is a
string prefix: "orders/4" matches orders/4 and orders/42. A lock nobody
holds or waits for is not listed. The service lists at most ` + fmt.Sprint(lockservice.MaxListLimit) + ` locks; when
more match, yard says so on stderr.

-o json prints a JSON array, [] when there are none, one object per lock:

  name     string  the lock's name
  holder   object  who holds it, as in ` + "`yard lock show -o json`" + `; null while
                   its first contender is being granted
  waiters  number  how many wait in line`,
		Example: `  yard lock ls
  yard lock ls orders/ -o json | jq -r '.[].name'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			lc, err := dialLock(ctx, cmd, &f, connect)
			if err != nil {
				return fmt.Errorf("lock ls: %w", err)
			}
			defer lc.Close()
			resp, err := lc.api.List(ctx, &lockv1.ListRequest{Prefix: prefix})
			if err != nil {
				return fmt.Errorf("lock ls: %w", callError(err, "", f.timeout))
			}
			rows := make([]lockSummaryJSON, 0, len(resp.GetLocks()))
			for _, l := range resp.GetLocks() {
				rows = append(rows, lockSummaryJSON{Name: l.GetName(), Holder: contenderView(l.GetHolder()), Waiters: l.GetWaiters()})
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				err = writeJSON(w, rows)
			} else {
				err = writeLocksTable(w, rows)
			}
			if err != nil {
				return fmt.Errorf("lock ls: writing output: %w", err)
			}
			if resp.GetTruncated() {
				warn(cmd, "more than %d locks match; listed the first %d", len(rows), len(rows))
			}
			return nil
		},
	}
	f.add(cmd, "how long to wait for a ZooKeeper session and the listing")
	return cmd
}

func newLockShowCmd() *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a lock's holder and its waiters in order",
		Long: `show prints the holder of the lock NAME and its waiters, first to be
granted first. A lock nobody holds or waits for is an error ("no such
lock"), exit status 1.

-o json prints one object:

  name     string  the lock's name
  holder   object  who holds it; null while its first contender is being
                   granted:
                     owner       string  the owner it was taken as
                     replica     string  instance id of the replica whose
                                         ZooKeeper session holds its node
                     token       number  its fencing token (for a waiter:
                                         the one it will have)
                     request_id  string  the acquire's request id
                     since       string  when it joined the line, RFC 3339,
                                         UTC
                     ttl_ms      number  the lease validity asked for
  waiters  array   objects as holder, in line order; [] when none`,
		Example: `  yard lock show orders/42
  yard lock show orders/42 -o json | jq '.holder.token'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			name := args[0]
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			lc, err := dialLock(ctx, cmd, &f, connect)
			if err != nil {
				return fmt.Errorf("lock show: %w", err)
			}
			defer lc.Close()
			d, err := lc.api.Describe(ctx, &lockv1.DescribeRequest{Name: name})
			if status.Code(err) == codes.NotFound {
				return &serviceError{msg: "no such lock: " + name, err: err}
			}
			if err != nil {
				return fmt.Errorf("lock show %q: %w", name, callError(err, name, f.timeout))
			}
			v := lockJSON{Name: d.GetName(), Holder: contenderView(d.GetHolder()), Waiters: []contenderJSON{}}
			for _, c := range d.GetWaiters() {
				v.Waiters = append(v.Waiters, *contenderView(c))
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				err = writeJSON(w, v)
			} else {
				err = writeLockTable(w, v, time.Now())
			}
			if err != nil {
				return fmt.Errorf("lock show: writing output: %w", err)
			}
			return nil
		},
	}
	f.add(cmd, "how long to wait for a ZooKeeper session and the lock")
	return cmd
}

// contenderView returns the view of c; nil when c is.
func contenderView(c *lockv1.Contender) *contenderJSON {
	if c == nil {
		return nil
	}
	v := &contenderJSON{
		Owner: c.GetOwner(), Replica: c.GetReplica(), Token: c.GetToken(), RequestID: c.GetRequestId(),
		TTLMS: c.GetTtl().AsDuration().Milliseconds(),
	}
	if s := c.GetSince(); s != nil {
		v.Since = s.AsTime().UTC().Format(time.RFC3339Nano)
	}
	return v
}

func writeLocksTable(w io.Writer, rows []lockSummaryJSON) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOLDER\tTOKEN\tREPLICA\tWAITERS")
	for _, r := range rows {
		owner, token, replica := "-", "-", "-"
		if h := r.Holder; h != nil {
			owner, token, replica = orDash(h.Owner), fmt.Sprint(h.Token), orDash(h.Replica)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", r.Name, owner, token, replica, r.Waiters)
	}
	return tw.Flush()
}

// writeLockTable prints the holder and then the waiters in line order,
// with how long each has been in line as of now.
func writeLockTable(w io.Writer, v lockJSON, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "lock %s: %d waiting\n", v.Name, len(v.Waiters))
	fmt.Fprintln(tw, "ROLE\tOWNER\tTOKEN\tREPLICA\tIN LINE\tTTL")
	row := func(role string, c contenderJSON) {
		var age *int64
		if at, err := time.Parse(time.RFC3339Nano, c.Since); err == nil {
			s := int64(now.Sub(at) / time.Second)
			age = &s
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\n", role, orDash(c.Owner), c.Token, orDash(c.Replica),
			ageText(age), time.Duration(c.TTLMS)*time.Millisecond)
	}
	if v.Holder != nil {
		row("holder", *v.Holder)
	} else {
		fmt.Fprintln(tw, "holder\t(being granted)\t-\t-\t-\t-")
	}
	for i, c := range v.Waiters {
		row(fmt.Sprintf("waiter %d", i+1), c)
	}
	return tw.Flush()
}
