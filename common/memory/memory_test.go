package memory

import (
	"runtime"
	"testing"
)

var sink [][]byte

// After a burst of garbage the runtime holds free heap memory; ReleaseIfIdle
// returns it, and does nothing when there is little.
func TestReleaseIfIdleReturnsTheFreeHeap(t *testing.T) {
	for i := 0; i < 64; i++ {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC()
	before, _ := heap()
	if before < minIdle {
		t.Skipf("the runtime already released the burst (%d bytes free)", before)
	}
	if !ReleaseIfIdle() {
		t.Fatalf("%d bytes free after a 64 MB burst: not released", before)
	}
	after, _ := heap()
	if after >= minIdle {
		t.Fatalf("%d bytes still free after the release (%d before)", after, before)
	}
	if ReleaseIfIdle() {
		t.Fatal("released again with nothing left to release")
	}
}
