package main

import (
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	stand "github.com/nats-io/nats-streaming-server/server"
	"github.com/nats-io/nats-streaming-server/stores"
)

// startNATS runs the NATS Streaming server in this process with a file
// store in dir, so channels, messages and durable subscriptions survive a
// restart of the stack. Port 0 picks a free port.
func startNATS(dir string, port int, clusterID string) (*stand.StanServer, error) {
	sOpts := stand.GetDefaultOptions()
	sOpts.ID = clusterID
	sOpts.StoreType = stores.TypeFile
	sOpts.FilestoreDir = dir
	// Durability as in infra/k8s/nats-depl.yaml (see docs/NATS.md): flushed
	// to the OS on every publish, synced to disk every 100 ms.
	sOpts.FileStoreOpts.DoSync = false
	sOpts.FileStoreOpts.AutoSync = 100 * time.Millisecond
	// The seed's server flags -hbi 5s -hbt 5s -hbf 2: a client that died
	// without closing is dropped after about 10 s.
	sOpts.ClientHBInterval = 5 * time.Second
	sOpts.ClientHBTimeout = 5 * time.Second
	sOpts.ClientHBFailCount = 2
	nOpts := stand.DefaultNatsServerOptions
	nOpts.Host = "127.0.0.1"
	nOpts.Port = port
	if port == 0 {
		nOpts.Port = -1 // nats-server's RANDOM_PORT
	}
	nOpts.NoLog = true
	nOpts.NoSigs = true // signals are the stack's to handle
	srv, err := stand.RunServerWithOpts(sOpts, &nOpts)
	if err != nil {
		return nil, fmt.Errorf("nats streaming on port %d (another stack running? set DEV_NATS_PORT or NATS_URL): %w", port, err)
	}
	return srv, nil
}

// startJetStream runs nats-server with JetStream in this process, its file
// store in dir, so streams, messages and durable consumers survive a
// restart of the stack. Port 0 picks a free port. The services create the
// stream when they connect (common/events).
func startJetStream(dir string, port int) (*natsserver.Server, error) {
	opts := &natsserver.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true, // signals are the stack's to handle
	}
	if port == 0 {
		opts.Port = -1 // RANDOM_PORT
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats jetstream: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats jetstream on port %d did not start (another stack running? set DEV_NATS_PORT or NATS_URL)", port)
	}
	return srv, nil
}
