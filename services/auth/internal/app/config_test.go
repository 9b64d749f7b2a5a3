package app

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
)

func TestLoadConfig(t *testing.T) {
	var out bytes.Buffer
	c, err := LoadConfig(config.FromMap(map[string]string{"MONGO_URI": "mongodb://u:pw@db:27017", "JWT_KEY": "s3cret"}),
		slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3000 || c.MongoDB != "auth" || c.JWTTTL != 24*time.Hour || !c.CookieSecure || c.SigninRate != 10 {
		t.Fatalf("defaults: %+v", c)
	}
	if strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), ":pw@") {
		t.Fatalf("secret logged: %s", out.String())
	}
	_, err = LoadConfig(config.FromMap(map[string]string{"BCRYPT_COST": "99", "SIGNIN_RATE": "-1"}), slog.New(slog.DiscardHandler))
	for _, want := range []string{"MONGO_URI is required", "JWT_KEY is required", "BCRYPT_COST", "SIGNIN_RATE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want it to mention %s", err, want)
		}
	}
}
