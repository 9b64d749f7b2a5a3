package e2e

import (
	"context"

	"github.com/ticketing-go/ticketing/testenv"
)

// infraImages are the MongoDB, NATS Streaming and JetStream images testenv
// uses (the official ones when present or pullable, else stand-ins built
// from source).
func infraImages(ctx context.Context) (mongo, nats, jetstream string, err error) {
	info, err := testenv.Prepare(ctx)
	return info.MongoImage, info.NATSImage, info.JetStreamImage, err
}

// mongoCmd: the image's defaults (mongod, or mongo-standin on :27017 with
// its data in /data, which survives a stop and start of the container).
func mongoCmd() []string { return nil }
