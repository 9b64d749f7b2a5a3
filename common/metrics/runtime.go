package metrics

import (
	"bytes"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
)

// registerRuntime adds the Go runtime and process metrics read at scrape
// time: a few of those the Prometheus client's default collectors serve,
// under the same names.
func registerRuntime(r *Registry) {
	r.newFunc("go_goroutines", "Number of goroutines that currently exist.", "gauge", "", func() (float64, bool) {
		return float64(runtime.NumGoroutine()), true
	})
	r.newFunc("go_gc_cycles_total", "Number of completed GC cycles.", "counter", "", func() (float64, bool) {
		return readRuntime("/gc/cycles/total:gc-cycles")
	})
	r.newFunc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use (live and not yet swept objects).", "gauge", "", func() (float64, bool) {
		return readRuntime("/memory/classes/heap/objects:bytes")
	})
	r.newFunc("go_memstats_heap_inuse_bytes", "Number of heap bytes in in-use spans.", "gauge", "", func() (float64, bool) {
		return readRuntime("/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes")
	})
	r.newFunc("go_memstats_sys_bytes", "Number of bytes obtained from the system by the Go runtime.", "gauge", "", func() (float64, bool) {
		return readRuntime("/memory/classes/total:bytes")
	})
	r.newFunc("go_info", "Information about the Go environment.", "gauge",
		`version="`+string(appendEscaped(nil, runtime.Version(), true))+`"`,
		func() (float64, bool) { return 1, true })
	if runtime.GOOS == "linux" {
		r.newFunc("process_resident_memory_bytes", "Resident memory size in bytes (VmRSS).", "gauge", "", residentMemory)
	}
}

// readRuntime returns the sum of the named runtime/metrics values (false
// when one is not supported).
func readRuntime(names ...string) (float64, bool) {
	samples := make([]rtmetrics.Sample, len(names))
	for i, n := range names {
		samples[i].Name = n
	}
	rtmetrics.Read(samples)
	var sum float64
	for _, s := range samples {
		switch s.Value.Kind() {
		case rtmetrics.KindUint64:
			sum += float64(s.Value.Uint64())
		case rtmetrics.KindFloat64:
			sum += s.Value.Float64()
		default:
			return 0, false
		}
	}
	return sum, true
}

// residentMemory reads VmRSS from /proc/self/status.
func residentMemory() (float64, bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	return parseVmRSS(status)
}

// parseVmRSS finds "VmRSS:   12345 kB" in the contents of /proc/self/status
// and returns it in bytes.
func parseVmRSS(status []byte) (float64, bool) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) != 2 || string(fields[1]) != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseUint(string(fields[0]), 10, 64)
		if err != nil {
			return 0, false
		}
		return float64(kb) * 1024, true
	}
	return 0, false
}
