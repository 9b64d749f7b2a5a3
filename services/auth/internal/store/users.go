// Package store keeps the users of the auth service in MongoDB. A unique
// index on the lower-cased email decides "Email in use", so two concurrent
// sign-ups with one email cannot both succeed.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/services/auth/internal/domain"
)

// Collection is the name of the users collection.
const Collection = "users"

// Users is the MongoDB implementation of domain.Users.
type Users struct{ coll *mongo.Collection }

type userDoc struct {
	ID           primitive.ObjectID `bson:"_id"`
	Email        string             `bson:"email"`
	EmailKey     string             `bson:"emailKey"`
	PasswordHash string             `bson:"password"`
	CreatedAt    time.Time          `bson:"createdAt"`
}

// NewUsers returns the store over db and creates its indexes.
func NewUsers(ctx context.Context, db *mongo.Database) (*Users, error) {
	u := &Users{coll: db.Collection(Collection)}
	_, err := u.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "emailKey", Value: 1}},
		Options: options.Index().SetUnique(true).SetName("emailKey_unique"),
	})
	if err != nil {
		return nil, fmt.Errorf("users: create index: %w", mongox.Classify(err))
	}
	return u, nil
}

// Create inserts u and sets its ID; domain.ErrEmailInUse when the email key exists.
func (s *Users) Create(ctx context.Context, u *domain.User) error {
	d := userDoc{ID: primitive.NewObjectID(), Email: u.Email, EmailKey: u.EmailKey,
		PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt}
	if _, err := s.coll.InsertOne(ctx, d); err != nil {
		if mongox.IsDuplicateKey(err) {
			return domain.ErrEmailInUse
		}
		return mongox.Classify(err)
	}
	u.ID = d.ID.Hex()
	return nil
}

// ByEmailKey returns the user with the lower-cased email key, or apperr.ErrNotFound.
func (s *Users) ByEmailKey(ctx context.Context, key string) (*domain.User, error) {
	var d userDoc
	err := s.coll.FindOne(ctx, bson.M{"emailKey": key}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, apperr.ErrNotFound
	}
	if err != nil {
		return nil, mongox.Classify(err)
	}
	return &domain.User{ID: d.ID.Hex(), Email: d.Email, EmailKey: d.EmailKey,
		PasswordHash: d.PasswordHash, CreatedAt: d.CreatedAt}, nil
}
