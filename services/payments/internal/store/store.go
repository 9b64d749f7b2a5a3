// Package store is the MongoDB adapter of the payments service: the order
// replica (collection "orders") and the payments (collection "payments", each
// with its pending payment:created event in its outbox field).
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/payments/internal/domain"
)

// Collection names.
const (
	OrdersCollection   = "orders"
	PaymentsCollection = "payments"
)

// Store holds both collections.
type Store struct {
	Orders   *Orders
	Payments *Payments
}

// New returns the store on db and creates its indexes. n (an
// *outbox.Relay) numbers and publishes the event of each payment stored;
// nil: see outbox.Notifier.
func New(ctx context.Context, db *mongo.Database, n outbox.Notifier) (*Store, error) {
	pc := db.Collection(PaymentsCollection)
	p := &Payments{coll: pc, records: outbox.NewRecords[paymentDoc](pc, n, "The payment is being changed concurrently, try again")}
	// The database's guarantee of one payment per order, whatever the
	// claims in the replica say.
	_, err := p.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "orderId", Value: 1}},
		Options: options.Index().SetUnique(true).SetName("orderId_unique"),
	})
	if err != nil {
		return nil, fmt.Errorf("payments index: %w", mongox.Classify(err))
	}
	orders := db.Collection(OrdersCollection)
	return &Store{Orders: &Orders{coll: orders,
		records: outbox.NewRecords[orderDoc](orders, nil, "The order is being changed concurrently, try again")}, Payments: p}, nil
}

// Orders is the order replica.
type Orders struct {
	coll    *mongo.Collection
	records *outbox.Records[orderDoc] // every write (see Update)
}

type orderDoc struct {
	ID        string             `bson:"_id"`
	UserID    string             `bson:"userId"`
	Status    events.OrderStatus `bson:"status"`
	Price     float64            `bson:"price"`
	Version   int64              `bson:"version"`
	PaymentID string             `bson:"paymentId,omitempty"`
	Attempt   int                `bson:"attempt"`
	Claim     *claimDoc          `bson:"claim,omitempty"`
}

type claimDoc struct {
	Token string    `bson:"token"`
	Until time.Time `bson:"until"`
}

func toDoc(o domain.Order) orderDoc {
	d := orderDoc{ID: o.ID, UserID: o.UserID, Status: o.Status, Price: o.Price, Version: o.Version,
		PaymentID: o.PaymentID, Attempt: o.Attempt}
	if o.Claim != nil {
		d.Claim = &claimDoc{Token: o.Claim.Token, Until: o.Claim.Until}
	}
	return d
}

func (d orderDoc) order() domain.Order {
	o := domain.Order{ID: d.ID, UserID: d.UserID, Status: d.Status, Price: d.Price, Version: d.Version,
		PaymentID: d.PaymentID, Attempt: d.Attempt}
	if d.Claim != nil {
		o.Claim = &domain.Claim{Token: d.Claim.Token, Until: d.Claim.Until.UTC()}
	}
	return o
}

// Insert stores a new order; an order already known -> domain.ErrStale.
func (s *Orders) Insert(ctx context.Context, o domain.Order) error {
	err := s.records.Insert(ctx, toDoc(o))
	if mongox.IsDuplicateKey(err) {
		return domain.ErrStale
	}
	return err
}

// Get returns the order or apperr.ErrNotFound.
func (s *Orders) Get(ctx context.Context, id string) (domain.Order, error) {
	d, err := s.get(ctx, id)
	return d.order(), err
}

func (s *Orders) get(ctx context.Context, id string) (orderDoc, error) {
	var d orderDoc
	err := s.coll.FindOne(ctx, bson.M{"_id": id}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return d, apperr.ErrNotFound
	}
	return d, mongox.Classify(err)
}

// Update applies fn to the stored order and writes the result only if no
// other write happened in between, retrying otherwise: outbox.Records, the
// compare-and-swap every store uses. It is the one place where writes to
// an order race. The first attempt runs on the state this process last
// wrote (an order:cancelled right after the order:created this process
// inserted costs one round trip); only the conditional write decides.
func (s *Orders) Update(ctx context.Context, id string, fn func(*domain.Order) error) (domain.Order, error) {
	var out domain.Order
	var fnErr error // fn's error, returned with the order fn judged
	_, err := s.records.Update(ctx, id, func(d *orderDoc) ([]events.Event, error) {
		o := d.order()
		if fnErr = fn(&o); fnErr != nil {
			out = o
			return nil, fnErr
		}
		*d, out = toDoc(o), o
		return nil, nil
	})
	if err != nil && err != fnErr {
		return domain.Order{}, err
	}
	return out, err
}

// Payments stores payments and their events. A payment is created with
// its event through outbox.Records; the refund's two writes carry no event
// and are single atomic updates, each bumping the revision (outbox.RevField)
// as Records' own writes do, so that a state Records remembers is never
// taken for current after them.
type Payments struct {
	coll    *mongo.Collection
	records *outbox.Records[paymentDoc]
}

// Coll is the collection the outbox relay publishes from.
func (s *Payments) Coll() *mongo.Collection { return s.coll }

type paymentDoc struct {
	ID        string    `bson:"_id"`
	OrderID   string    `bson:"orderId"`
	StripeID  string    `bson:"stripeId"`
	CreatedAt time.Time `bson:"createdAt"`
	// RefundDue: the order was cancelled while this payment was charged;
	// set before the refund is asked of the provider, cleared with RefundID
	// once it is done (see domain.Service.RefundOrder).
	RefundDue  bool       `bson:"refundDue,omitempty"`
	RefundID   string     `bson:"refundId,omitempty"`
	RefundedAt *time.Time `bson:"refundedAt,omitempty"`
}

// Create stores p with its payment:created event in one insert, so the event
// exists exactly when the payment does. A second payment of the same order
// -> apperr Conflict (unique index on orderId).
func (s *Payments) Create(ctx context.Context, p domain.Payment) error {
	err := s.records.Insert(ctx, paymentDoc{ID: p.ID, OrderID: p.OrderID, StripeID: p.StripeID, CreatedAt: time.Now().UTC()},
		events.PaymentCreated{ID: p.ID, OrderID: p.OrderID, StripeID: p.StripeID})
	if mongox.IsDuplicateKey(err) {
		return apperr.New(apperr.Conflict, "Order already paid")
	}
	return err
}

// ByOrder returns the payment of an order or apperr.ErrNotFound.
func (s *Payments) ByOrder(ctx context.Context, orderID string) (domain.Payment, error) {
	var d paymentDoc
	err := s.coll.FindOne(ctx, bson.M{"orderId": orderID}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return domain.Payment{}, apperr.ErrNotFound
	}
	if err != nil {
		return domain.Payment{}, mongox.Classify(err)
	}
	return d.payment(), nil
}

func (d paymentDoc) payment() domain.Payment {
	return domain.Payment{ID: d.ID, OrderID: d.OrderID, StripeID: d.StripeID, RefundID: d.RefundID}
}

// MarkRefundDue marks the payment of the order due for a refund, unless it
// is refunded already, and returns it (apperr.ErrNotFound: no payment).
func (s *Payments) MarkRefundDue(ctx context.Context, orderID string) (domain.Payment, error) {
	var d paymentDoc
	err := s.coll.FindOneAndUpdate(ctx, bson.M{"orderId": orderID, "refundId": bson.M{"$exists": false}},
		bson.M{"$set": bson.M{"refundDue": true}, "$inc": bson.M{outbox.RevField: int64(1)}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return s.ByOrder(ctx, orderID) // refunded already, or no payment
	}
	if err != nil {
		return domain.Payment{}, mongox.Classify(err)
	}
	return d.payment(), nil
}

// Refunded records the refund of payment id.
func (s *Payments) Refunded(ctx context.Context, id, refundID string) error {
	_, err := s.coll.UpdateOne(ctx, bson.M{"_id": id}, bson.M{
		"$set":   bson.M{"refundId": refundID, "refundedAt": time.Now().UTC()},
		"$unset": bson.M{"refundDue": ""},
		"$inc":   bson.M{outbox.RevField: int64(1)},
	})
	return mongox.Classify(err)
}

// RefundsDue returns up to limit payments marked due for a refund.
func (s *Payments) RefundsDue(ctx context.Context, limit int) ([]domain.Payment, error) {
	cur, err := s.coll.Find(ctx, bson.M{"refundDue": true}, options.Find().SetLimit(int64(limit)).
		SetProjection(bson.M{"outbox": 0}))
	if err != nil {
		return nil, mongox.Classify(err)
	}
	var docs []paymentDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, mongox.Classify(err)
	}
	out := make([]domain.Payment, len(docs))
	for i, d := range docs {
		out[i] = d.payment()
	}
	return out, nil
}
