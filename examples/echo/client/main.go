// Command client calls the echo service through the registry: it needs
// no server address, only ZooKeeper's.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

func main() {
	zk := flag.String("zk", os.Getenv("SWITCHYARD_ZK"), "ZooKeeper host:port[,...]")
	n := flag.Int("n", 3, "calls to make")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	reg, err := registry.Dial(ctx, *zk)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	// 1. connection setup, 2. service addressing (zk:///), 3. transport:
	conn, err := rpc.NewClient(reg, echov1.EchoService_ServiceDesc.ServiceName,
		rpc.WithRetry(rpc.RetryPolicy{
			Methods:     []string{echov1.EchoService_ServiceDesc.ServiceName + "/Echo"},
			MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Multiplier: 2,
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := echov1.NewEchoServiceClient(conn) // 4. the generated proxy
	for i := range *n {
		resp, err := client.Echo(ctx, &echov1.EchoRequest{Message: fmt.Sprint("hello ", i)})
		if err != nil { // 5. the result: a response or a status error
			log.Fatal(err)
		}
		fmt.Printf("%s (served by %s)\n", resp.GetMessage(), resp.GetServedBy())
	}
}
