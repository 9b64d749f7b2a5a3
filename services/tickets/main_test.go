package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRun runs the whole service as main does, from the environment, until
// its context is cancelled (what SIGTERM does), and expects a clean stop.
func TestRun(t *testing.T) {
	mongo, nats := testenv.Mongo(t), testenv.EventBus(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for k, v := range map[string]string{
		"PORT": strconv.Itoa(port), "MONGO_URI": mongo.URI, "MONGO_DB": mongo.Database, "JWT_KEY": "main-test-key",
		"EVENT_BUS": nats.Bus, "NATS_URL": nats.URL, "NATS_CLUSTER_ID": nats.ClusterID, "NATS_SUBJECT_PREFIX": nats.SubjectPrefix,
		"NATS_CLIENT_ID": "tickets-main-test",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run ended before ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, _ := auth.Sign([]byte("main-test-key"), auth.User{ID: "u", Email: "u@test.io"}, time.Minute, time.Now())
	req, _ := http.NewRequest("POST", base+"/api/tickets", strings.NewReader(`{"title":"t","price":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	t.Setenv("MONGO_URI", "")
	t.Setenv("JWT_KEY", "")
	err := run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "MONGO_URI") || !strings.Contains(err.Error(), "JWT_KEY") {
		t.Fatalf("run = %v, want a configuration error naming MONGO_URI and JWT_KEY", err)
	}
}
