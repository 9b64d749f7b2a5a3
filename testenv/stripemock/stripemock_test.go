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
