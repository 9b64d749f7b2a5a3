package config

import (
	"os"
	"runtime/debug"
)

// ServiceGOGC is the garbage collector's target (GOGC) of the services
// when the environment does not set GOGC.
//
// Why not Go's 100: the services keep a live heap of a few MB, but a burst
// of requests grows the heap to twice its live size, and the runtime hands
// the freed memory back to the OS only slowly. Measured with make bench
// (the same run otherwise): tickets ended at 25.4-26.0 MB resident with
// 100 and at 23.5 MB with 50 (peak 33 -> 29 MB), the other services 1-2 MB
// lower as well, and no workload slower beyond the run-to-run noise: the
// services' share of the CPU is small next to the store's.
const ServiceGOGC = 50

// SetServiceGC applies ServiceGOGC unless GOGC is set; call it first thing
// in main.
func SetServiceGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(ServiceGOGC)
	}
}
