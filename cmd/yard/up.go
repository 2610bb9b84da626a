package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/switchyard-dev/switchyard/internal/devstack"
)

func newUpCmd() *cobra.Command {
	var cfg devstack.Config
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start ZooKeeper and NATS for development; Ctrl-C stops them",
		Long: `up starts a local Switchyard stack and runs until Ctrl-C or SIGTERM:

  ZooKeeper  child processes of the installed Debian package (one server,
             or --zk-ensemble 3 for a three-server ensemble), unless --zk
             names a running one
  NATS       an embedded server with JetStream, unless --nats names one

It prints the addresses, and export lines that other yard commands read.
On exit it stops everything it started and removes its state directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.ZKServers < 1 || cfg.ZKServers%2 == 0 {
				return fmt.Errorf("--zk-ensemble %d: want an odd number of servers (1, 3, 5)", cfg.ZKServers)
			}
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			stack, err := devstack.Start(ctx, cfg)
			if err != nil {
				return err
			}
			defer stack.Close()

			fmt.Fprintln(out, "Switchyard dev stack is up")
			if zk := stack.StartedZK(); zk != nil {
				pids := make([]string, zk.Size())
				for i := range zk.Size() {
					pids[i] = fmt.Sprint(zk.Pid(i))
				}
				mode := "standalone"
				if zk.Size() > 1 {
					mode = fmt.Sprintf("ensemble of %d", zk.Size())
				}
				fmt.Fprintf(out, "  ZooKeeper  %s (%s, started here, pid %s)\n", stack.ZK, mode, strings.Join(pids, ","))
			} else {
				fmt.Fprintf(out, "  ZooKeeper  %s (given)\n", stack.ZK)
			}
			if stack.StartedNATS() != nil {
				fmt.Fprintf(out, "  NATS       %s (embedded, JetStream)\n", stack.NATS)
			} else {
				fmt.Fprintf(out, "  NATS       %s (given)\n", stack.NATS)
			}
			fmt.Fprintf(out, "  state      %s\n\n", stack.Dir())
			fmt.Fprintf(out, "export SWITCHYARD_ZK=%s\n", stack.ZK)
			fmt.Fprintf(out, "export SWITCHYARD_NATS=%s\n\n", stack.NATS)
			fmt.Fprintln(out, "Ctrl-C stops everything started here.")

			<-ctx.Done()
			fmt.Fprintln(out, "stopping...")
			if err := stack.Close(); err != nil {
				return fmt.Errorf("stopping the stack: %w", err)
			}
			fmt.Fprintln(out, "stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ZK, "zk", "", "use the running ZooKeeper at host:port[,host:port...] instead of starting one")
	f.IntVar(&cfg.ZKServers, "zk-ensemble", 1, "number of ZooKeeper servers to start: 1, or 3 for an ensemble")
	f.IntVar(&cfg.ZKPort, "zk-port", 0, "client port of the (first) started ZooKeeper server (default: a free port)")
	f.StringVar(&cfg.NATS, "nats", "", "use the NATS server at this URL instead of embedding one")
	f.IntVar(&cfg.NATSPort, "nats-port", 0, "client port of the embedded NATS server (default: a free port)")
	return cmd
}
