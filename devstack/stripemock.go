package main

// DevStripeKey is the key payments gets with stripe-mock, which accepts any
// test key. stripe-mock itself is built by testenv/stripemock, as for the
// tests (see Options.stripe).
const DevStripeKey = "sk_test_devstack"
