//! Kontor's domain, shared by the web app (compiled to WASM) and the server (native).
//!
//! Everything here is pure: no I/O, no clock, no platform. Callers pass in "now" and the stored
//! state; functions return decisions. See `ARCHITECTURE.md` at the workspace root for the map.
#![forbid(unsafe_code)]

pub mod clock;
pub mod codes;
pub mod digits;
pub mod ids;
pub mod lang;
pub mod outbox;
pub mod rules;
pub mod sms;
pub mod tracking;
pub mod wire;

pub use codes::{Code, Status};
pub use ids::{MeterSerial, Reading, SubscriptionNumber};
pub use lang::Lang;
pub use tracking::{ComplaintNumber, Receipt, TrackingCode};

#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
