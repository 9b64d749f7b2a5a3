// Command testenv-prepare prints the test environment's mode and, in
// containers mode, makes the server images available (building the
// stand-in images where the official ones cannot be pulled). `make test`
// runs it before the tests.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ticketing-go/ticketing/testenv"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	info, err := testenv.Prepare(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("testenv: %s, ready in %s\n", info, time.Since(start).Round(time.Millisecond))
}
