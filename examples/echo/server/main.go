// Command server serves the echo service and registers it in ZooKeeper
// until Ctrl-C, then drains: run `yard up`, export what it prints, and
// start one or more of these.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard-dev/switchyard/internal/echo"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

func main() {
	zk := flag.String("zk", os.Getenv("SWITCHYARD_ZK"), "ZooKeeper host:port[,...]")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	id := flag.String("id", "", "instance id (default: the address)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg, err := registry.Dial(ctx, *zk) // service addressing: our registry session
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	s := rpc.NewServer(reg, rpc.WithInstance(&registryv1.Instance{Id: *id}))
	echov1.RegisterEchoServiceServer(s, &echo.Server{ID: *id})
	go func() {
		<-s.Ready()
		log.Printf("serving on %s, registered in %s", lis.Addr(), *zk)
	}()
	if err := s.Serve(ctx, lis); err != nil { // until Ctrl-C, then drain
		log.Fatal(err)
	}
}
