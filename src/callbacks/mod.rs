//! The callback path (contract section 6), below the HTTP layer: the gate
//! that checks a delivery's token before anything else ([`gate`]), what is
//! written of a payload ([`intake`], shared with the poller), and applying
//! an authentic delivery once, with its record ([`apply`]), in groups when
//! deliveries come together ([`applier`]). The handler in
//! `http::callbacks` only reads the body and renders the answer.

pub mod applier;
pub mod apply;
pub mod gate;
pub mod intake;

pub use gate::CallbackGate;
pub use intake::Intake;
