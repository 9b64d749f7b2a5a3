package mongox_test

import (
	"testing"

	"github.com/ticketing-go/ticketing/common/mongox"
)

func TestRecentKeepsTheLatestRevision(t *testing.T) {
	r := mongox.NewRecent[string, string](2)
	r.Put("a", 2, "a@2")
	r.Put("a", 1, "a@1") // a writer that finished later with an older revision
	if d, rev, ok := r.Get("a"); !ok || d != "a@2" || rev != 2 {
		t.Fatalf("Get(a) = %q, %d, %v; want a@2 at 2", d, rev, ok)
	}
	r.Forget("a", 1) // a write conditional on an older revision failed: keep the newer
	if _, _, ok := r.Get("a"); !ok {
		t.Fatal("Forget of an older revision dropped the newer state")
	}
	r.Forget("a", 2)
	if _, _, ok := r.Get("a"); ok {
		t.Fatal("Forget at the remembered revision kept it")
	}
	r.Put("a", 3, "a@3")
	r.Put("b", 1, "b@1")
	r.Put("c", 1, "c@1") // over the bound: one of a, b goes
	n := 0
	for _, id := range []string{"a", "b", "c"} {
		if _, _, ok := r.Get(id); ok {
			n++
		}
	}
	if _, _, ok := r.Get("c"); !ok || n != 2 {
		t.Fatalf("after 3 puts into 2 places: c kept %v, %d kept; want c and one other", ok, n)
	}
}
