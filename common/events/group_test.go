package events

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
)

// fakeSubscriber records the subscriptions made on it.
type fakeSubscriber struct {
	subs     []Subscription
	handlers []Handler
}

func (f *fakeSubscriber) Subscribe(s Subscription, h Handler) error {
	f.subs = append(f.subs, s)
	f.handlers = append(f.handlers, Chain(h, s.Middleware...))
	return nil
}

// TestSubscribeGroup: every route is subscribed in the group, with the
// group's settings and the logging middleware, so a failed handling is
// logged in every service alike.
func TestSubscribeGroup(t *testing.T) {
	var out bytes.Buffer
	f := &fakeSubscriber{}
	fail := errors.New("boom")
	err := SubscribeGroup(f, Group{Name: "x-service", AckWait: 3 * time.Second, MaxInflight: 7, MaxDeliveries: 2, Log: slog.New(slog.NewTextHandler(&out, nil))},
		Route{Subject: SubjectOrderCreated, Handler: func(context.Context, *Msg) error { return nil }},
		Route{Subject: SubjectOrderCancelled, Handler: func(context.Context, *Msg) error { return fail }},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.subs) != 2 || f.subs[0].Subject != SubjectOrderCreated || f.subs[1].Subject != SubjectOrderCancelled {
		t.Fatalf("subscriptions %+v", f.subs)
	}
	for _, s := range f.subs {
		if s.QueueGroup != "x-service" || s.AckWait != 3*time.Second || s.MaxInflight != 7 || s.MaxDeliveries != 2 || len(s.Middleware) == 0 {
			t.Fatalf("subscription %+v does not carry the group's settings and middleware", s)
		}
	}
	if err := f.handlers[1](context.Background(), &Msg{Subject: string(SubjectOrderCancelled), Attempt: 1}); !errors.Is(err, fail) {
		t.Fatalf("handler error %v, want it passed on (no ack)", err)
	}
	if !strings.Contains(out.String(), "event handling failed") || !strings.Contains(out.String(), "boom") {
		t.Fatalf("failure not logged: %q", out.String())
	}
}

func TestWaitsFromEnv(t *testing.T) {
	env := config.FromMap(nil)
	ack, gap := WaitsFromEnv(env)
	if env.Err() != nil || ack != DefaultAckWait || gap != DefaultGapWait {
		t.Fatalf("defaults: %v %v %v", ack, gap, env.Err())
	}
	env = config.FromMap(map[string]string{"ACK_WAIT": "5s", "GAP_WAIT": "5s"})
	WaitsFromEnv(env)
	if err := env.Err(); err == nil || !strings.Contains(err.Error(), "must be less than ACK_WAIT") {
		t.Fatalf("err = %v, want GAP_WAIT >= ACK_WAIT refused", err)
	}
}
