package app_test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/testenv"
)

// TestBinary runs the orders command itself: it refuses to start with a bad
// configuration, naming every problem, and stops cleanly (exit 0) on SIGTERM.
func TestBinary(t *testing.T) {
	bin := buildBinary(t, "./services/orders")

	t.Run("bad configuration", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"EXPIRATION_WINDOW=soon"}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatal("started without MONGO_URI and JWT_KEY")
		}
		for _, want := range []string{"MONGO_URI is required", "JWT_KEY is required", "EXPIRATION_WINDOW"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("output does not mention %q:\n%s", want, out)
			}
		}
	})

	t.Run("graceful stop", func(t *testing.T) {
		m, n := testenv.Mongo(t), testenv.EventBus(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		var out bytes.Buffer
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "PORT="+port, "MONGO_URI="+m.URI, "MONGO_DB="+m.Database, "JWT_KEY="+jwtKey,
			"EVENT_BUS="+n.Bus, "NATS_URL="+n.URL, "NATS_CLUSTER_ID="+n.ClusterID, "NATS_SUBJECT_PREFIX="+n.SubjectPrefix, "LOG_FORMAT=text")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		testenv.Eventually(t, 30*time.Second, "orders binary ready", func() bool {
			res, err := http.Get("http://127.0.0.1:" + port + "/readyz")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("no exit after SIGTERM\n%s", out.String())
		}
		if strings.Contains(out.String(), jwtKey) {
			t.Fatalf("JWT key logged:\n%s", out.String())
		}
	})
}
