package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/spf13/cobra"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "yard",
		Short: "Run and inspect Switchyard: gRPC over ZooKeeper, messaging over NATS",
		Long: `yard runs and inspects Switchyard.

  yard up          start ZooKeeper and NATS for development, until Ctrl-C
  yard zk status   show the mode, zxid and load of every ZooKeeper server
  yard registry    list services, show or watch their instances, list znodes
  yard serve lock  run a lock-service replica until Ctrl-C
  yard lock        acquire (and hold) a lock, list locks, show a lock's queue
  yard bench rpc   measure the RPC stack against raw grpc-go (QPS, p50, p99)
  yard bench lock  measure the lock service (gRPC, NATS) against raw ZooKeeper
  yard demo        RPC vs. a message queue on a flash sale, measured side by side
  yard version     print the version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCmd(), newUpCmd())
	root.AddCommand(newZKCmd())
	root.AddCommand(newRegistryCmd())
	root.AddCommand(newBenchCmd())
	root.AddCommand(newServeCmd())
	root.AddCommand(newLockCmd())
	root.AddCommand(newDemoCmd())
	return root
}

// checkNATSURL checks the --nats flag: a URL with a scheme and a host, as
// nats.go dials it.
func checkNATSURL(s string) error {
	if u, err := url.Parse(s); err != nil || u.Scheme == "" || u.Hostname() == "" {
		return fmt.Errorf("--nats %q: want a URL such as nats://127.0.0.1:4222", s)
	}
	return nil
}
