package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// Floor is what the services cannot beat on these servers: the raw driver
// operations and the raw acknowledged publish each HTTP request stands on.
type Floor struct {
	coll    *mongo.Collection // documents found and updated, padded to the service's size
	inserts *mongo.Collection // documents the insert floors create
	pub     Publisher
	subject string
	docs    []floorDoc // one per worker
}

type floorDoc struct {
	id      primitive.ObjectID
	version int64
}

// floorPayload is about the size of a ticket event.
func floorPayload(id primitive.ObjectID, v int64) []byte {
	b, _ := json.Marshal(map[string]any{"id": id.Hex(), "version": v, "title": "floor ticket", "price": 20, "userId": "5f5e5e5e5e5e5e5e5e5e5e5e"})
	return b
}

// Publisher publishes and returns once the broker has stored the message
// (an *events.Conn, on the bus the services use).
type Publisher interface {
	PublishRaw(ctx context.Context, subject string, data []byte) error
}

// NewFloor uses the collections coll (found and updated documents) and
// inserts (inserted ones) of its own database on the same server, and pub
// on subject.
func NewFloor(coll, inserts *mongo.Collection, pub Publisher, subject string) *Floor {
	return &Floor{coll: coll, inserts: inserts, pub: pub, subject: subject}
}

// Prepare gives each of n workers its own document and pads the
// collection to size documents, so lookups scan as much as the service's.
func (f *Floor) Prepare(ctx context.Context, n int, size int64) error {
	f.docs = make([]floorDoc, n)
	for i := range f.docs {
		id := primitive.NewObjectID()
		if _, err := f.coll.InsertOne(ctx, bson.M{"_id": id, "title": "floor ticket", "price": 20.0, "version": int64(0)}); err != nil {
			return fmt.Errorf("floor prepare: %w", err)
		}
		f.docs[i] = floorDoc{id: id}
	}
	return f.Pad(ctx, size)
}

// Pad inserts filler documents until the collection holds size documents.
func (f *Floor) Pad(ctx context.Context, size int64) error {
	have, err := f.coll.CountDocuments(ctx, bson.M{})
	if err != nil {
		return err
	}
	for have < size {
		batch := min(size-have, 1000)
		docs := make([]any, batch)
		for i := range docs {
			docs[i] = bson.M{"_id": primitive.NewObjectID(), "title": "padding", "price": 1.0, "version": int64(0)}
		}
		if _, err := f.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
			return fmt.Errorf("floor padding: %w", err)
		}
		have += batch
	}
	return nil
}

func (f *Floor) publish(ctx context.Context, id primitive.ObjectID, v int64) error {
	return f.pub.PublishRaw(ctx, f.subject, floorPayload(id, v))
}

// InsertPublish is the floor of POST /api/tickets: insert, then publish.
func (f *Floor) InsertPublish(ctx context.Context, w int) error {
	id := primitive.NewObjectID()
	if _, err := f.inserts.InsertOne(ctx, bson.M{"_id": id, "title": "floor ticket", "price": 20.0, "userId": "5f5e5e5e5e5e5e5e5e5e5e5e", "version": int64(0)}); err != nil {
		return err
	}
	return f.publish(ctx, id, 0)
}

// Find is the floor of GET /api/tickets/:id: find the worker's document by id.
func (f *Floor) Find(ctx context.Context, w int) error {
	var doc bson.M
	return f.coll.FindOne(ctx, bson.M{"_id": f.docs[w].id}).Decode(&doc)
}

// UpdatePublish is the floor of PUT /api/tickets/:id: a conditional update
// on the version the worker last saw, then publish.
func (f *Floor) UpdatePublish(ctx context.Context, w int) error {
	if err := f.update(ctx, w); err != nil {
		return err
	}
	d := f.docs[w]
	return f.publish(ctx, d.id, d.version)
}

func (f *Floor) update(ctx context.Context, w int) error {
	d := &f.docs[w]
	res, err := f.coll.UpdateOne(ctx, bson.M{"_id": d.id, "version": d.version},
		bson.M{"$set": bson.M{"title": "floor ticket " + time.Now().Format(time.StampMicro), "price": 25.0}, "$inc": bson.M{"version": 1}})
	if err != nil {
		return err
	}
	if res.MatchedCount != 1 {
		return fmt.Errorf("floor update: version %d not matched", d.version)
	}
	d.version++
	return nil
}

// OrderCycle is the floor of POST /api/orders + DELETE /api/orders/:id:
// insert + publish (the order), then conditional update + publish (the
// cancellation).
func (f *Floor) OrderCycle(ctx context.Context, w int) error {
	id := primitive.NewObjectID()
	if _, err := f.inserts.InsertOne(ctx, bson.M{"_id": id, "status": "created", "ticket": f.docs[w].id, "version": int64(0)}); err != nil {
		return err
	}
	if err := f.publish(ctx, id, 0); err != nil {
		return err
	}
	res, err := f.inserts.UpdateOne(ctx, bson.M{"_id": id, "version": int64(0)}, bson.M{"$set": bson.M{"status": "cancelled"}, "$inc": bson.M{"version": 1}})
	if err != nil {
		return err
	}
	if res.MatchedCount != 1 {
		return fmt.Errorf("floor cancel: not matched")
	}
	return f.publish(ctx, id, 1)
}
