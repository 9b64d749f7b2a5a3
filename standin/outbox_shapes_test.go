package standin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// TestOutboxQueryShapes checks, against FerretDB behind the front, the query
// and update shapes a transactional outbox kept in an array field of the
// document needs. Shapes marked required must work; the others are reported
// (t.Log, and README.md) so the outbox author knows what to avoid.
func TestOutboxQueryShapes(t *testing.T) {
	s := MustStart(t)
	db := mustConnect(t, s.URI())
	ctx := context.Background()
	coll := db.Collection("tickets")

	// Entries as the outbox stores them (a struct: fixed field order, which
	// matters for whole-document equality).
	type entry struct {
		ID        primitive.ObjectID `bson:"id"`
		Subject   string             `bson:"subject"`
		Data      []byte             `bson:"data"`
		CreatedAt time.Time          `bson:"createdAt"`
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	e1 := entry{primitive.NewObjectID(), "ticket:created", []byte(`{"id":"1"}`), now}
	e2 := entry{primitive.NewObjectID(), "ticket:updated", []byte(`{"id":"1"}`), now}
	withOutbox, empty, missing := "with", "empty", "missing"
	reset := func(t *testing.T) {
		t.Helper()
		if _, err := coll.DeleteMany(ctx, bson.M{}); err != nil {
			t.Fatal(err)
		}
		docs := []any{
			bson.M{"_id": withOutbox, "version": 0, "outbox": bson.A{e1, e2}, "outboxPending": int64(2)},
			bson.M{"_id": empty, "version": 0, "outbox": bson.A{}, "outboxPending": int64(0)},
			bson.M{"_id": missing, "version": 0},
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(filter any) (string, error) {
		cur, err := coll.Find(ctx, filter, options.Find().SetSort(bson.M{"_id": 1}))
		if err != nil {
			return "", err
		}
		var docs []struct {
			ID string `bson:"_id"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			return "", err
		}
		out := ""
		for _, d := range docs {
			out += d.ID + " "
		}
		return out, nil
	}
	outboxOf := func(id string) (string, error) {
		var d struct {
			Version int
			Outbox  []struct {
				ID      primitive.ObjectID `bson:"id"`
				Subject string
			}
		}
		if err := coll.FindOne(ctx, bson.M{"_id": id}).Decode(&d); err != nil {
			return "", err
		}
		out := fmt.Sprintf("v%d:", d.Version)
		for _, e := range d.Outbox {
			out += " " + e.Subject
		}
		return out, nil
	}

	type shape struct {
		name     string
		required bool
		run      func() (string, error)
		want     string
	}
	shapes := []shape{
		{"find {outbox.0: {$exists: true}}", true, func() (string, error) {
			return ids(bson.M{"outbox.0": bson.M{"$exists": true}})
		}, "with "},
		{"find {outbox: {$ne: []}}", false, func() (string, error) {
			return ids(bson.M{"outbox": bson.M{"$ne": bson.A{}}})
		}, "missing with "},
		{"find {outbox: {$exists: true, $ne: []}}", false, func() (string, error) {
			return ids(bson.M{"outbox": bson.M{"$exists": true, "$ne": bson.A{}}})
		}, "with "},
		{"find {outbox: {$not: {$size: 0}}, outbox: $exists}", false, func() (string, error) {
			return ids(bson.M{"outbox": bson.M{"$exists": true, "$not": bson.M{"$size": 0}}})
		}, "with "},
		{"find {outbox: {$elemMatch: {}}}", false, func() (string, error) {
			return ids(bson.M{"outbox": bson.M{"$elemMatch": bson.M{}}})
		}, "with "},
		{"find {outbox.id: {$exists: true}}", false, func() (string, error) {
			return ids(bson.M{"outbox.id": bson.M{"$exists": true}})
		}, "with "},
		{"find {outbox.subject: \"ticket:created\"} (dot path into array)", false, func() (string, error) {
			return ids(bson.M{"outbox.subject": "ticket:created"})
		}, "with "},
		{"find {outbox.id: <oid>} (dot path into array)", false, func() (string, error) {
			return ids(bson.M{"outbox.id": e1.ID})
		}, "with "},
		{"find {outbox: {$elemMatch: {id: <oid>}}}", false, func() (string, error) {
			return ids(bson.M{"outbox": bson.M{"$elemMatch": bson.M{"id": e1.ID}}})
		}, "with "},
		{"find {outbox: {$size: 2}}", false, func() (string, error) {
			return ids(bson.M{"outbox": bson.M{"$size": 2}})
		}, "with "},
		{"find {outbox: {$type: \"array\"}}", false, func() (string, error) {
			return ids(bson.M{"outbox": bson.M{"$type": "array"}})
		}, "empty with "},
		{"find {outboxPending: {$ne: 0}} (an inequality on a top-level scalar; missing fields match)", false, func() (string, error) {
			return ids(bson.M{"outboxPending": bson.M{"$ne": int64(0)}})
		}, "missing with "},
		{"updateOne {_id, outbox: {$all: [entries]}} $pullAll + $inc (the guarded removal of entries written before relays numbered them), twice", true, func() (string, error) {
			remove := func() (int64, error) {
				r, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox, "outbox": bson.M{"$all": bson.A{e1}}},
					bson.M{"$pullAll": bson.M{"outbox": bson.A{e1}}, "$inc": bson.M{"outboxPending": int64(-1)}})
				if err != nil {
					return 0, err
				}
				return r.ModifiedCount, nil
			}
			first, err := remove()
			if err != nil {
				return "", err
			}
			second, err := remove()
			if err != nil {
				return "", err
			}
			var d struct {
				Pending int64 `bson:"outboxPending"`
			}
			if err := coll.FindOne(ctx, bson.M{"_id": withOutbox}).Decode(&d); err != nil {
				return "", err
			}
			o, err := outboxOf(withOutbox)
			return fmt.Sprint(first, second, " pending ", d.Pending, " ", o), err
		}, "1 0 pending 1 v0: ticket:updated"},
		{"updateOne {_id, outbox: <entry>} (array contains the sub-document)", false, func() (string, error) {
			r, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox, "outbox": e1}, bson.M{"$set": bson.M{"seen": true}})
			if err != nil {
				return "", err
			}
			return fmt.Sprint(r.MatchedCount), nil
		}, "1"},
		{"find {outbox.src: <oid>, outbox.seq: {$gt: n}} (a relay's scan for its entries above its checkpoint)", true, func() (string, error) {
			src := primitive.NewObjectID()
			numbered := bson.M{"id": primitive.NewObjectID(), "subject": "ticket:updated", "data": []byte("{}"), "createdAt": now, "src": src, "seq": int64(5)}
			if _, err := coll.InsertOne(ctx, bson.M{"_id": "numbered", "outbox": bson.A{numbered}}); err != nil {
				return "", err
			}
			defer coll.DeleteOne(ctx, bson.M{"_id": "numbered"})
			above, err := ids(bson.M{"outbox.src": src, "outbox.seq": bson.M{"$gt": int64(3)}})
			if err != nil {
				return "", err
			}
			below, err := ids(bson.M{"outbox.src": src, "outbox.seq": bson.M{"$gt": int64(5)}})
			return above + "| " + below, err
		}, "numbered | "},
		{"find {outbox.0: {$exists: true}, outbox.src: {$exists: false}} (the scan for entries written before relays numbered them)", true, func() (string, error) {
			numbered := bson.M{"id": primitive.NewObjectID(), "subject": "ticket:updated", "data": []byte("{}"), "createdAt": now, "src": primitive.NewObjectID(), "seq": int64(1)}
			if _, err := coll.InsertOne(ctx, bson.M{"_id": "numbered", "outbox": bson.A{numbered}}); err != nil {
				return "", err
			}
			defer coll.DeleteOne(ctx, bson.M{"_id": "numbered"})
			return ids(bson.M{"outbox.0": bson.M{"$exists": true}, "outbox.src": bson.M{"$exists": false}})
		}, "with "},
		{"countDocuments {outbox.0: {$exists: true}}", true, func() (string, error) {
			n, err := coll.CountDocuments(ctx, bson.M{"outbox.0": bson.M{"$exists": true}})
			return fmt.Sprint(n), err
		}, "1"},
		{"updateOne {$set, $inc version, $push outbox} in one write", true, func() (string, error) {
			e3 := entry{primitive.NewObjectID(), "ticket:updated", []byte("{}"), now}
			r, err := coll.UpdateOne(ctx, bson.M{"_id": empty, "version": 0}, bson.M{"$set": bson.M{"title": "t"}, "$inc": bson.M{"version": 1}, "$push": bson.M{"outbox": e3}})
			if err != nil || r.ModifiedCount != 1 {
				return fmt.Sprint(r), err
			}
			return outboxOf(empty)
		}, "v1: ticket:updated"},
		{"updateOne $push onto a missing outbox field", true, func() (string, error) {
			if _, err := coll.UpdateOne(ctx, bson.M{"_id": missing}, bson.M{"$push": bson.M{"outbox": e1}}); err != nil {
				return "", err
			}
			return outboxOf(missing)
		}, "v0: ticket:created"},
		{"updateOne $pull {outbox: {id: <oid>}}", false, func() (string, error) {
			if _, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox}, bson.M{"$pull": bson.M{"outbox": bson.M{"id": e1.ID}}}); err != nil {
				return "", err
			}
			return outboxOf(withOutbox)
		}, "v0: ticket:updated"},
		{"updateOne $pull {outbox: {id: {$in: [...]}}}", false, func() (string, error) {
			if _, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox}, bson.M{"$pull": bson.M{"outbox": bson.M{"id": bson.M{"$in": bson.A{e1.ID, e2.ID}}}}}); err != nil {
				return "", err
			}
			return outboxOf(withOutbox)
		}, "v0:"},
		{"updateOne $pull of a whole entry (equality on the sub-document)", true, func() (string, error) {
			if _, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox}, bson.M{"$pull": bson.M{"outbox": e1}}); err != nil {
				return "", err
			}
			return outboxOf(withOutbox)
		}, "v0: ticket:updated"},
		{"updateOne $pullAll {outbox: [entries as read]}", true, func() (string, error) {
			if _, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox}, bson.M{"$pullAll": bson.M{"outbox": bson.A{e1, e2}}}); err != nil {
				return "", err
			}
			return outboxOf(withOutbox)
		}, "v0:"},
		{"updateOne $pop {outbox: -1} (remove the first)", false, func() (string, error) {
			if _, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox}, bson.M{"$pop": bson.M{"outbox": -1}}); err != nil {
				return "", err
			}
			return outboxOf(withOutbox)
		}, "v0: ticket:updated"},
		{"updateOne {_id, outbox.0.id: <oid>} $pop {outbox: -1} (remove the head if it is that entry)", true, func() (string, error) {
			r, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox, "outbox.0.id": e1.ID}, bson.M{"$pop": bson.M{"outbox": -1}})
			if err != nil {
				return "", err
			}
			r2, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox, "outbox.0.id": e1.ID}, bson.M{"$pop": bson.M{"outbox": -1}})
			if err != nil {
				return "", err
			}
			o, err := outboxOf(withOutbox)
			return fmt.Sprint(r.ModifiedCount, r2.ModifiedCount, " ", o), err
		}, "1 0 v0: ticket:updated"},
		{"updateOne {_id, outbox.id: <oid>} $pull (guarded by a dot path)", false, func() (string, error) {
			r, err := coll.UpdateOne(ctx, bson.M{"_id": withOutbox, "outbox.id": e1.ID}, bson.M{"$pull": bson.M{"outbox": bson.M{"id": e1.ID}}})
			if err != nil {
				return "", err
			}
			o, err := outboxOf(withOutbox)
			return fmt.Sprint(r.ModifiedCount, " ", o), err
		}, "1 v0: ticket:updated"},
		{"findOneAndUpdate returning the document after $pull", false, func() (string, error) {
			var d bson.M
			err := coll.FindOneAndUpdate(ctx, bson.M{"_id": withOutbox}, bson.M{"$pull": bson.M{"outbox": bson.M{"id": e1.ID}}},
				options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
			if err != nil {
				return "", err
			}
			return fmt.Sprint(len(d["outbox"].(bson.A))), nil
		}, "1"},
		{"find with projection {outbox: 1}", false, func() (string, error) {
			var d bson.M
			if err := coll.FindOne(ctx, bson.M{"_id": withOutbox}, options.FindOne().SetProjection(bson.M{"outbox": 1})).Decode(&d); err != nil {
				return "", err
			}
			_, hasV := d["version"]
			return fmt.Sprint(len(d["outbox"].(bson.A)), " ", hasV), nil
		}, "2 false"},
		{"find sort by outbox.createdAt", false, func() (string, error) {
			cur, err := coll.Find(ctx, bson.M{"outbox.0": bson.M{"$exists": true}}, options.Find().SetSort(bson.M{"outbox.createdAt": 1}))
			if err != nil {
				return "", err
			}
			var docs []bson.M
			err = cur.All(ctx, &docs)
			return fmt.Sprint(len(docs)), err
		}, "1"},
	}
	var report string
	for _, sh := range shapes {
		reset(t)
		got, err := sh.run()
		status := "works"
		switch {
		case err != nil:
			status = "ERROR: " + firstLine(err.Error())
		case got != sh.want:
			status = fmt.Sprintf("WRONG RESULT: got %q, MongoDB gives %q", got, sh.want)
		}
		report += fmt.Sprintf("\n  %-70s %s", sh.name, status)
		if sh.required && status != "works" {
			t.Errorf("required shape %s: %s", sh.name, status)
		}
	}
	t.Log("outbox shapes on FerretDB v1.24 (SQLite) behind the front:" + report)
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
