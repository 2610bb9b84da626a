package rpc_test

import (
	"slices"
	"testing"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// TestOnDrainRunsBeforeLeaving: the drain hook runs once when the drain
// begins, while the instance is still in the registry.
func TestOnDrainRunsBeforeLeaving(t *testing.T) {
	reg := lbtest.Dial(t)
	var calls int
	var listed bool
	var r *running
	r = serve(t, reg, &echo.Server{}, rpc.WithOnDrain(func() {
		calls++
		insts, _, err := reg.Instances(echoService)
		listed = err == nil && slices.ContainsFunc(insts, func(i *registryv1.Instance) bool { return i.GetAddress() == r.addr })
	}))
	r.stop()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	r.done <- nil // for serve's cleanup
	if calls != 1 || !listed {
		t.Fatalf("the hook ran %d times, with the instance listed: %v; want once, listed", calls, listed)
	}
}
