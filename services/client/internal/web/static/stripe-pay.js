// Paying with Stripe.js (Payment Element), used only when the client is
// configured with a publishable key (STRIPE_PUBLISHABLE_KEY). UNTESTED on
// the development machine: Stripe.js cannot be loaded there. It follows
// Stripe's "deferred intent" flow with manual payment method creation:
// the Payment Element collects the card, stripe.createPaymentMethod turns
// it into a PaymentMethod id (pm_...), and the form posts that id as the
// token to the payments API, which creates and confirms the PaymentIntent.
(function () {
  "use strict";
  var form = document.getElementById("pay-form");
  if (!form || !window.Stripe) return;
  var stripe = window.Stripe(form.getAttribute("data-stripe-key"));
  var elements = stripe.elements({
    mode: "payment",
    amount: parseInt(form.getAttribute("data-amount"), 10),
    currency: "usd",
    paymentMethodCreation: "manual"
  });
  elements.create("payment").mount("#payment-element");
  var sending = false;
  form.addEventListener("submit", function (ev) {
    if (sending) return; // the token is set: let the form go
    ev.preventDefault();
    elements.submit().then(function (res) {
      if (res.error) throw res.error;
      return stripe.createPaymentMethod({ elements: elements });
    }).then(function (res) {
      if (res.error) throw res.error;
      document.getElementById("token").value = res.paymentMethod.id;
      sending = true;
      form.submit();
    }).catch(function (err) {
      var msg = document.getElementById("order-message");
      msg.textContent = (err && err.message) || "The card could not be read.";
    });
  });
})();
