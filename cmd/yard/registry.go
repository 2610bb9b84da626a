package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

// defaultTreePath is where `yard registry tree` starts: everything
// Switchyard keeps in ZooKeeper, registry.Root and the rest.
const defaultTreePath = "/switchyard"

// instanceJSON is one instance as `yard registry show` and watch print it,
// and in JSON the documented, stable shape: every key is always present.
// It is what an operator needs to read, not the stored record: the weight
// is the effective one and the state has no enum prefix.
type instanceJSON struct {
	ID           string            `json:"id"`
	Service      string            `json:"service"`
	Address      string            `json:"address"`
	Weight       uint32            `json:"weight"`
	Zone         string            `json:"zone"`
	Version      string            `json:"version"`
	State        string            `json:"state"`
	RegisteredAt string            `json:"registered_at"`
	AgeS         *int64            `json:"age_s"`
	Metadata     map[string]string `json:"metadata"`
}

// fieldChange is one field of one instance that differs between two
// watch snapshots. From and To are the values as instanceJSON has them.
type fieldChange struct {
	ID    string `json:"id"`
	Field string `json:"field"`
	From  any    `json:"from"`
	To    any    `json:"to"`
}

// watchEvent is one line of `yard registry watch -o json`: a snapshot and
// how it differs from the one printed before it. Every key is always
// present; lists are [] rather than null.
type watchEvent struct {
	Time      string         `json:"time"`
	Seq       uint64         `json:"seq"`
	Added     []string       `json:"added"`
	Removed   []string       `json:"removed"`
	Changed   []fieldChange  `json:"changed"`
	Instances []instanceJSON `json:"instances"`
	Stale     bool           `json:"stale"`
	Held      []string       `json:"held"`
	Problems  []string       `json:"problems"`
}

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Inspect the service registry in ZooKeeper",
		Long: `registry reads what Switchyard servers have registered in ZooKeeper
under ` + registry.Root + `: services, their instances, and the raw znodes.

Every subcommand takes its connect string from --zk, or else from
$SWITCHYARD_ZK, which ` + "`yard up`" + ` prints an export line for, and fails
when it has no ZooKeeper session within --timeout. Flags are checked before
yard connects anywhere.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newRegistryLsCmd(), newRegistryShowCmd(), newRegistryWatchCmd(), newRegistryTreeCmd())
	return cmd
}

// registryFlags are the flags every registry subcommand has.
type registryFlags struct {
	zk      string
	output  string
	timeout time.Duration
}

func (f *registryFlags) add(cmd *cobra.Command, timeoutHelp string) {
	fl := cmd.Flags()
	fl.StringVar(&f.zk, "zk", "", "ZooKeeper connect string host:port[,host:port...] (default $"+zkEnv+")")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, timeoutHelp)
}

// check validates the flags, in the order and with the messages of
// `yard zk status`, and returns the connect string. It touches no network.
func (f *registryFlags) check(cmd *cobra.Command) (string, error) {
	addrs, err := zkAddrs(f.zk, cmd.Flags().Changed("zk"))
	if err != nil {
		return "", err
	}
	if f.output != "table" && f.output != "json" {
		return "", fmt.Errorf("-o %q: unknown output format, want table or json", f.output)
	}
	if f.timeout <= 0 {
		return "", fmt.Errorf("--timeout %v: want a positive duration", f.timeout)
	}
	return strings.Join(addrs, ","), nil
}

// dial connects to the registry within ctx. Its logger writes warnings
// (a session expiry, instances held as last known good) to stderr, so
// that they never mix with what a script reads from stdout.
func (f *registryFlags) dial(ctx context.Context, cmd *cobra.Command, connect string) (*registry.Client, error) {
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := registry.Dial(ctx, connect, registry.WithLogger(log))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no ZooKeeper session with %s within --timeout %v: %w", connect, f.timeout, err)
		}
		return nil, err
	}
	return c, nil
}

// bounded runs read, which reads through c, and gives up when ctx ends
// first. The registry's reads take no context, and go-zookeeper waits
// for an answer as long as the connection lasts, so closing c is what
// makes read return: bounded waits for it, leaving no goroutine behind.
func bounded(ctx context.Context, c *registry.Client, timeout time.Duration, read func() error) error {
	done := make(chan error, 1)
	go func() { done <- read() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.Close()
		<-done
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("ZooKeeper did not answer within --timeout %v: %w", timeout, ctx.Err())
		}
		return ctx.Err()
	}
}

// warn prints a warning to stderr, in the form main prints errors.
func warn(cmd *cobra.Command, format string, args ...any) {
	fmt.Fprintf(cmd.ErrOrStderr(), "yard: warning: "+format+"\n", args...)
}

func newRegistryLsCmd() *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List registered services with their instance counts",
		Long: `ls lists every service under ` + registry.Root + `, sorted by name, with
how many instance nodes it has (DRAINING instances and records that cannot
be read included: see ` + "`yard registry show`" + `).

-o json prints a JSON array, [] when nothing is registered, one object per
service:

  service    string  the service name
  instances  number  how many instance nodes it has`,
		Example: `  yard registry ls
  yard registry ls --zk 127.0.0.1:2181 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			c, err := f.dial(ctx, cmd, connect)
			if err != nil {
				return fmt.Errorf("registry ls: %w", err)
			}
			defer c.Close()
			var services []registry.ServiceSummary
			if err := bounded(ctx, c, f.timeout, func() (err error) {
				services, err = c.Services()
				return err
			}); err != nil {
				return fmt.Errorf("registry ls: %w", err)
			}
			if services == nil {
				services = []registry.ServiceSummary{}
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				err = writeJSON(w, services)
			} else {
				err = writeServicesTable(w, services)
			}
			if err != nil {
				return fmt.Errorf("registry ls: writing output: %w", err)
			}
			return nil
		},
	}
	f.add(cmd, "how long to wait for a ZooKeeper session and the listing")
	return cmd
}

func newRegistryShowCmd() *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "show SERVICE",
		Short: "Show the instances of a service",
		Long: `show lists the instances registered for SERVICE, sorted by id, in every
state. A service that never registered an instance is an error ("no such
service"), so a misspelt name is not taken for an empty service; one
whose instances have all left prints an empty list.

WEIGHT is the effective weight: a record's 0 (unset) is the default, 100.
AGE is the time since the instance registered.

A record that cannot be read (not written by Switchyard, or by a broken
writer) is left out and reported on stderr; the other instances are still
printed, and then yard fails with "N records of SERVICE could not be read".

-o json prints a JSON array, [] when there are none, one object per
instance:

  id             string  the instance id (its znode's name)
  service        string  the service name
  address        string  host:port clients dial
  weight         number  effective weight: 100 when the record says 0
  zone           string  failure domain, "" when unset
  version        string  software version, "" when unset
  state          string  "SERVING" or "DRAINING" (takes no new calls)
  registered_at  string  when it registered, RFC 3339, UTC; "" when the
                         record does not say
  age_s          number  whole seconds since registered_at (negative when
                         the writer's clock is ahead); null when unknown
  metadata       object  string labels, {} when none`,
		Example: `  yard registry show switchyard.echo.v1.EchoService
  yard registry show switchyard.echo.v1.EchoService -o json | jq '.[].address'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			service := args[0]
			if err := registry.ValidateName(service); err != nil {
				return fmt.Errorf("service name: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			c, err := f.dial(ctx, cmd, connect)
			if err != nil {
				return fmt.Errorf("registry show: %w", err)
			}
			defer c.Close()
			var (
				insts    []*registryv1.Instance
				problems []error
			)
			if err := bounded(ctx, c, f.timeout, func() (err error) {
				insts, problems, err = c.Instances(service)
				return err
			}); err != nil {
				return fmt.Errorf("registry show: %w", err)
			}
			rows := instanceViews(insts, time.Now())
			w := cmd.OutOrStdout()
			if f.output == "json" {
				err = writeJSON(w, rows)
			} else {
				err = writeInstancesTable(w, rows)
			}
			if err != nil {
				return fmt.Errorf("registry show: writing output: %w", err)
			}
			for _, p := range problems {
				warn(cmd, "%v", p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("%d records of %s could not be read", len(problems), service)
			}
			return nil
		},
	}
	f.add(cmd, "how long to wait for a ZooKeeper session and the instances")
	return cmd
}

func newRegistryWatchCmd() *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "watch SERVICE",
		Short: "Print the instances of a service, then every change, until Ctrl-C",
		Long: `watch prints the instances of SERVICE as ` + "`yard registry show`" + ` does, then
what changes, as it changes, until Ctrl-C or SIGTERM, and then exits 0.

It sees what a Switchyard client's resolver sees: a registry.Watcher with
the default last-known-good protection. Changes that follow each other
within a few milliseconds may be printed as one.

Each change is one line, after the time:

  + ID ADDRESS                     an instance registered
  - ID                             an instance left (or its hold ran out)
  ~ ID FIELD OLD→NEW [FIELD ...]   a record changed: weight, state, zone,
                                   version, metadata, address, registered_at
  ! stale: ...                     ZooKeeper is unreachable: the list is the
                                   last one read, and clients keep using it
  ! fresh: ...                     ZooKeeper is reachable again
  ! held ID: ...                   the instance's node vanished without
                                   deregistering (its session ended); it is
                                   kept as last known good for a while
  ! back ID                        a held instance's node is back

Records that cannot be read are reported on stderr when they appear.

-o json prints one JSON object per line (JSON Lines): the first for the
list as first read, then one per new snapshot of the registry:

  time       string  when yard printed it, RFC 3339, UTC
  seq        number  the snapshot's sequence number; it increases, and may
                     skip snapshots superseded before yard printed them
  added      array   ids of instances that are new since the previous line
                     (on the first line: all of them)
  removed    array   ids of instances gone since the previous line
  changed    array   one object per changed field of a remaining instance:
                       id     string  the instance id
                       field  string  weight, state, zone, version,
                                      metadata, address or registered_at
                       from   value   the old value, typed as in instances
                       to     value   the new value
  instances  array   every instance, as objects of ` + "`yard registry show -o json`" + `,
                     held ones included
  stale      bool    true while ZooKeeper is unreachable
  held       array   ids of instances kept as last known good
  problems   array   strings: records that cannot be read`,
		Example: `  yard registry watch switchyard.echo.v1.EchoService
  yard registry watch switchyard.echo.v1.EchoService -o json | jq -c '.changed'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			service := args[0]
			if err := registry.ValidateName(service); err != nil {
				return fmt.Errorf("service name: %w", err)
			}
			err = watchService(cmd, &f, connect, service)
			if cmd.Context().Err() != nil {
				return nil // Ctrl-C or SIGTERM: the way a watch ends
			}
			return err
		},
	}
	f.add(cmd, "how long to wait for a ZooKeeper session and the first list")
	return cmd
}

// watchService runs `yard registry watch` until cmd's context ends.
func watchService(cmd *cobra.Command, f *registryFlags, connect, service string) error {
	ctx := cmd.Context()
	first, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c, err := f.dial(first, cmd, connect)
	if err != nil {
		return fmt.Errorf("registry watch: %w", err)
	}
	defer c.Close()
	w, err := c.Watch(service)
	if err != nil {
		return fmt.Errorf("registry watch: %w", err)
	}
	defer w.Close()
	out := cmd.OutOrStdout()

	var prev registry.Snapshot
	for seen := false; ; seen = true {
		next := ctx
		if !seen {
			next = first
		}
		snap, err := w.Next(next)
		if err != nil {
			if !seen && errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("registry watch: no list of %s within --timeout %v: %w", service, f.timeout, err)
			}
			return fmt.Errorf("registry watch: %w", err)
		}
		now := time.Now()
		ev := diffSnapshots(prev, snap, now, seen)
		switch {
		case f.output == "json":
			err = json.NewEncoder(out).Encode(ev)
		case !seen:
			err = writeInstancesTable(out, ev.Instances)
		default:
			_, err = io.WriteString(out, changeLines(ev, prev, now))
		}
		if err != nil {
			return fmt.Errorf("registry watch: writing output: %w", err)
		}
		for _, p := range newProblems(prev.Problems, snap.Problems) {
			warn(cmd, "%s", p)
		}
		prev = snap
	}
}

// diffSnapshots makes the watch event for snap, printed after prev (or,
// when seen is false, as the first).
func diffSnapshots(prev, snap registry.Snapshot, now time.Time, seen bool) watchEvent {
	ev := watchEvent{
		Time:      now.UTC().Format(time.RFC3339Nano),
		Seq:       snap.Seq,
		Added:     []string{},
		Removed:   []string{},
		Changed:   []fieldChange{},
		Instances: instanceViews(snap.Instances, now),
		Stale:     snap.Stale,
		Held:      append([]string{}, snap.Held...),
		Problems:  []string{},
	}
	for _, p := range snap.Problems {
		ev.Problems = append(ev.Problems, p.Error())
	}
	var before []instanceJSON
	if seen {
		before = instanceViews(prev.Instances, now)
	}
	byID := map[string]instanceJSON{}
	for _, v := range before {
		byID[v.ID] = v
	}
	after := map[string]bool{}
	for _, v := range ev.Instances {
		after[v.ID] = true
		old, ok := byID[v.ID]
		if !ok {
			ev.Added = append(ev.Added, v.ID)
			continue
		}
		ev.Changed = append(ev.Changed, fieldChanges(old, v)...)
	}
	for _, v := range before {
		if !after[v.ID] {
			ev.Removed = append(ev.Removed, v.ID)
		}
	}
	return ev
}

// fieldChanges lists the fields in which two views of one instance differ,
// in a fixed order: the ones balancing depends on first.
func fieldChanges(a, b instanceJSON) []fieldChange {
	var out []fieldChange
	add := func(field string, from, to any) {
		out = append(out, fieldChange{ID: a.ID, Field: field, From: from, To: to})
	}
	if a.Weight != b.Weight {
		add("weight", a.Weight, b.Weight)
	}
	if a.State != b.State {
		add("state", a.State, b.State)
	}
	if a.Zone != b.Zone {
		add("zone", a.Zone, b.Zone)
	}
	if a.Version != b.Version {
		add("version", a.Version, b.Version)
	}
	if !maps.Equal(a.Metadata, b.Metadata) {
		add("metadata", a.Metadata, b.Metadata)
	}
	if a.Address != b.Address {
		add("address", a.Address, b.Address)
	}
	if a.RegisteredAt != b.RegisteredAt {
		add("registered_at", a.RegisteredAt, b.RegisteredAt)
	}
	return out
}

// changeLines renders ev, which followed prev, as the table-mode lines of
// watch: notes about the registry first, then instances added, changed and
// removed, each line starting with the time.
func changeLines(ev watchEvent, prev registry.Snapshot, now time.Time) string {
	var b strings.Builder
	stamp := now.Format(time.TimeOnly)
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, "%s "+format+"\n", append([]any{stamp}, args...)...)
	}
	switch {
	case ev.Stale && !prev.Stale:
		line("! stale: ZooKeeper is unreachable; the list is the last one read")
	case !ev.Stale && prev.Stale:
		line("! fresh: ZooKeeper is reachable again")
	}
	byID := map[string]instanceJSON{}
	for _, v := range ev.Instances {
		byID[v.ID] = v
	}
	for _, id := range ev.Held {
		if !slices.Contains(prev.Held, id) {
			line("! held %s: its node vanished without deregistering; kept as last known good", id)
		}
	}
	for _, id := range prev.Held {
		if _, ok := byID[id]; ok && !slices.Contains(ev.Held, id) {
			line("! back %s", id)
		}
	}
	for _, id := range ev.Added {
		line("+ %s %s", id, byID[id].Address)
	}
	var cur string
	var parts []string
	flush := func() {
		if cur != "" {
			line("~ %s %s", cur, strings.Join(parts, " "))
		}
	}
	for _, ch := range ev.Changed {
		if ch.ID != cur {
			flush()
			cur, parts = ch.ID, nil
		}
		parts = append(parts, ch.Field+" "+showValue(ch.From)+"→"+showValue(ch.To))
	}
	flush()
	for _, id := range ev.Removed {
		line("- %s", id)
	}
	return b.String()
}

// showValue renders a field value for a change line: "" as "-", metadata
// as compact JSON.
func showValue(v any) string {
	switch v := v.(type) {
	case string:
		return orDash(v)
	case map[string]string:
		return metadataText(v)
	default:
		return fmt.Sprint(v)
	}
}

// newProblems returns the messages of now that were not in before.
func newProblems(before, now []error) []string {
	old := map[string]bool{}
	for _, p := range before {
		old[p.Error()] = true
	}
	var out []string
	for _, p := range now {
		if !old[p.Error()] {
			out = append(out, p.Error())
		}
	}
	return out
}

func newRegistryTreeCmd() *cobra.Command {
	var (
		f     registryFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "tree [PATH]",
		Short: "List the znodes below a path (default " + defaultTreePath + ")",
		Long: `tree lists PATH (default ` + defaultTreePath + `) and every znode below it,
depth first in name order, with each node's type, data size and number of
children: the registry's own nodes, locks, or anything else in ZooKeeper.
It reads no data and sets no watches.

It stops after --limit nodes (0: no limit) and says so on stderr.

-o json prints a JSON array, one object per node, in the same order:

  path             string  the node's full path
  type             string  persistent, ephemeral, persistent_sequential or
                           ephemeral_sequential (sequential: the name ends
                           in ZooKeeper's ten-digit counter)
  data_bytes       number  size of the node's data
  children         number  how many children it has
  ephemeral_owner  string  ephemeral nodes only: the owning session, "0x..."`,
		Example: `  yard registry tree
  yard registry tree /switchyard/services -o json --limit 0`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			path := defaultTreePath
			if len(args) == 1 {
				path = args[0]
			}
			if err := checkZNodePath(path); err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (no limit) or more", limit)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			c, err := f.dial(ctx, cmd, connect)
			if err != nil {
				return fmt.Errorf("registry tree: %w", err)
			}
			defer c.Close()
			var nodes []registry.Node
			if err := bounded(ctx, c, f.timeout, func() (err error) {
				nodes, err = c.Tree(path, limit)
				return err
			}); err != nil {
				return fmt.Errorf("registry tree: %w", err)
			}
			if nodes == nil {
				nodes = []registry.Node{}
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				err = writeJSON(w, nodes)
			} else {
				err = writeTreeTable(w, path, nodes)
			}
			if err != nil {
				return fmt.Errorf("registry tree: writing output: %w", err)
			}
			if limit > 0 && len(nodes) >= limit {
				warn(cmd, "stopped at --limit %d nodes; there may be more below %s", limit, path)
			}
			return nil
		},
	}
	f.add(cmd, "how long to wait for a ZooKeeper session and the listing")
	cmd.Flags().IntVar(&limit, "limit", 10000, "list at most this many nodes (0: no limit)")
	return cmd
}

// checkZNodePath checks path by ZooKeeper's rules for a node path
// (PathUtils.validatePath), so that a typo fails before yard connects:
// absolute, no empty, "." or ".." element, no trailing "/" but for the
// root, and none of the characters ZooKeeper refuses.
func checkZNodePath(path string) error {
	bad := func(why string) error { return fmt.Errorf("path %q: %s", path, why) }
	switch {
	case path == "":
		return bad("empty, want an absolute znode path such as " + defaultTreePath)
	case path[0] != '/':
		return bad("not absolute: a znode path starts with /")
	case path == "/":
		return nil
	case strings.HasSuffix(path, "/"):
		return bad("ends with /")
	}
	for _, el := range strings.Split(path[1:], "/") {
		switch el {
		case "":
			return bad("has an empty element (//)")
		case ".", "..":
			return bad("has a relative element " + strconv.Quote(el))
		}
	}
	for _, r := range path {
		if r <= 0x1f || r >= 0x7f && r <= 0x9f || r >= 0xd800 && r <= 0xf8ff || r >= 0xfff0 && r <= 0xffff {
			return bad(fmt.Sprintf("contains the character %U, which ZooKeeper refuses", r))
		}
	}
	return nil
}

// instanceViews returns the views of insts, in the same order, with ages
// as of now; never nil.
func instanceViews(insts []*registryv1.Instance, now time.Time) []instanceJSON {
	out := make([]instanceJSON, 0, len(insts))
	for _, inst := range insts {
		out = append(out, instanceView(inst, now))
	}
	return out
}

func instanceView(inst *registryv1.Instance, now time.Time) instanceJSON {
	v := instanceJSON{
		ID:       inst.GetId(),
		Service:  inst.GetService(),
		Address:  inst.GetAddress(),
		Weight:   registry.EffectiveWeight(inst),
		Zone:     inst.GetZone(),
		Version:  inst.GetVersion(),
		State:    stateName(inst.GetState()),
		Metadata: maps.Clone(inst.GetMetadata()),
	}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	if ts := inst.GetRegisteredAt(); ts != nil {
		at := ts.AsTime()
		v.RegisteredAt = at.UTC().Format(time.RFC3339Nano)
		age := int64(now.Sub(at) / time.Second)
		v.AgeS = &age
	}
	return v
}

// stateName is the state without its enum prefix; unspecified reads as
// SERVING, as the proto documents (and the registry decodes it so).
func stateName(s registryv1.InstanceState) string {
	if s == registryv1.InstanceState_INSTANCE_STATE_UNSPECIFIED {
		s = registryv1.InstanceState_INSTANCE_STATE_SERVING
	}
	return strings.TrimPrefix(s.String(), "INSTANCE_STATE_")
}

// ageText renders an age for people: two units at most, such as 42s,
// 3m12s, 5h3m or 2d5h.
func ageText(seconds *int64) string {
	if seconds == nil {
		return "-"
	}
	s := *seconds
	sign := ""
	if s < 0 {
		sign, s = "-", -s
	}
	var t string
	switch {
	case s < 60:
		t = fmt.Sprintf("%ds", s)
	case s < 3600:
		t = fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		t = fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	default:
		t = fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
	return sign + t
}

// metadataText renders metadata as compact JSON (keys sorted), "-" when
// there is none.
func metadataText(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprint(m) // a map of strings always marshals
	}
	return string(b)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeServicesTable(w io.Writer, services []registry.ServiceSummary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCES")
	for _, s := range services {
		fmt.Fprintf(tw, "%s\t%d\n", s.Name, s.Instances)
	}
	return tw.Flush()
}

func writeInstancesTable(w io.Writer, rows []instanceJSON) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tWEIGHT\tZONE\tVERSION\tSTATE\tAGE\tMETADATA")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
			r.ID, r.Address, r.Weight, orDash(r.Zone), orDash(r.Version), r.State,
			ageText(r.AgeS), metadataText(r.Metadata))
	}
	return tw.Flush()
}

// writeTreeTable prints nodes below top indented by depth: the first row
// has the full path, the others their last element.
func writeTreeTable(w io.Writer, top string, nodes []registry.Node) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tTYPE\tDATA BYTES\tCHILDREN\tOWNER")
	for _, n := range nodes {
		name := n.Path
		if n.Path != top {
			rel := strings.TrimPrefix(strings.TrimPrefix(n.Path, top), "/")
			name = strings.Repeat("  ", strings.Count(rel, "/")+1) + rel[strings.LastIndexByte(rel, '/')+1:]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", name, n.Type, n.DataBytes, n.Children, orDash(n.EphemeralOwner))
	}
	return tw.Flush()
}
