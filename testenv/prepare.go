package testenv

import (
	"context"
	"fmt"
)

// Info describes the servers of this process's mode.
type Info struct {
	Mode                                  string
	MongoImage, NATSImage, JetStreamImage string // containers mode only
}

func (i Info) String() string {
	if i.Mode == ModeEmbedded {
		return "mode embedded (NATS Streaming, NATS JetStream and the MongoDB stand-in in-process)"
	}
	return fmt.Sprintf("mode containers (images %s, %s, %s)", i.MongoImage, i.NATSImage, i.JetStreamImage)
}

// Prepare resolves the mode and, in containers mode, makes the images
// available (pulling or building stand-ins), without starting anything.
// `make test` runs it first (cmd/testenv-prepare) so that the mode is printed
// once and the test processes find the images ready.
func Prepare(ctx context.Context) (Info, error) {
	m, err := resolveMode()
	if err != nil {
		return Info{Mode: m}, err
	}
	info := Info{Mode: m}
	if m == ModeEmbedded {
		return info, nil
	}
	if info.MongoImage, err = mongoImage(ctx); err != nil {
		return info, err
	}
	if info.NATSImage, err = natsImage(ctx); err != nil {
		return info, err
	}
	info.JetStreamImage, err = jetStreamImage(ctx)
	return info, err
}
