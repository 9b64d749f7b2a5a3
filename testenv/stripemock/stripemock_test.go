package stripemock

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestSucceededFixtures(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "fixtures3.json")
	src := `{"resources":{"payment_intent":{"id":"pi_1","status":"requires_payment_method","next_action":{"type":"x"},"amount":100},"charge":{"id":"ch_1"}}}`
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := succeededFixtures(in)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	pi := doc["resources"]["payment_intent"]
	if pi["status"] != "succeeded" || pi["next_action"] != nil || pi["amount"] != float64(100) || doc["resources"]["charge"]["id"] != "ch_1" {
		t.Fatalf("patched fixtures: %s", out)
	}
	for _, bad := range []string{`{"resources":{}}`, `not json`} {
		p := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := succeededFixtures(p); err == nil {
			t.Errorf("fixtures %s: no error", bad)
		}
	}
	if _, err := succeededFixtures(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing fixtures: no error")
	}
}

// A cache that holds both files is used as it is: no go command runs.
func TestBuildUsesCache(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "stripe-mock-"+Version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"stripe-mock", "fixtures-succeeded.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := Build(t.Context(), cache, filepath.Join(cache, "no-go-here"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if files.Bin != filepath.Join(dir, "stripe-mock") || files.Fixtures != filepath.Join(dir, "fixtures-succeeded.json") {
		t.Fatalf("files = %+v", files)
	}
	// Half a cache is rebuilt: here the missing go command says so.
	if err := os.Remove(files.Fixtures); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(t.Context(), cache, filepath.Join(cache, "no-go-here"), nil); err == nil {
		t.Fatal("Build with the fixtures missing and no go command: no error")
	}
}
