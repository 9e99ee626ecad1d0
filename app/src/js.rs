//! Reading the browser's own parsed objects — IndexedDB records and `fetch` answers, which the
//! browser has already turned from JSON into JavaScript objects — into the app's types, field by
//! field.
//!
//! Writing goes through serde (`serde-wasm-bindgen`'s serializer). Reading does not: a serde
//! deserializer over `JsValue` and the derived readers for every record cost the shell about a
//! tenth of its weight, most of it error formatting the app never shows. A record missing a
//! required field reads as `None`, and the caller decides what that means.

use shared::wire::{ComplaintKind, MeterInfo};
use shared::{Code, Status};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;
use wasm_bindgen::{JsCast as _, JsValue};

use crate::model::{Complaint, Declaration, Meter, State};

/// A JavaScript object, read field by field. An absent field and `null` both read as `None`.
pub struct Fields(pub JsValue);

impl Fields {
    fn get(&self, key: &str) -> Option<JsValue> {
        js_sys::Reflect::get(&self.0, &key.into()).ok().filter(|v| !v.is_null() && !v.is_undefined())
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key)?.as_string()
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    /// A whole number from 0 to 2⁵³ (what a JSON number holds exactly).
    pub fn whole(&self, key: &str) -> Option<u64> {
        let n = self.number(key)?;
        (n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_992.0).then_some(n as u64)
    }

    pub fn flag(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn uuid(&self, key: &str) -> Option<Uuid> {
        self.text(key)?.parse().ok()
    }

    /// An RFC 3339 time, as the wire types and the records write them.
    pub fn time(&self, key: &str) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.text(key)?, &Rfc3339).ok()
    }

    pub fn object(&self, key: &str) -> Option<Fields> {
        self.get(key).filter(JsValue::is_object).map(Fields)
    }

    /// The objects of a list field.
    pub fn list(&self, key: &str) -> Option<Vec<Fields>> {
        let list: js_sys::Array = self.get(key)?.dyn_into().ok()?;
        Some(list.iter().map(Fields).collect())
    }
}

pub fn meter_info(f: &Fields) -> Option<MeterInfo> {
    Some(MeterInfo {
        subscription: f.text("subscription")?,
        digits: u8::try_from(f.whole("digits")?).ok()?,
        last_reading: f.whole("last_reading"),
        last_read_at: f.time("last_read_at"),
        avg_daily_m3: f.number("avg_daily_m3"),
        max_daily_m3: f.number("max_daily_m3")?,
    })
}

pub fn meter(f: &Fields) -> Option<Meter> {
    Some(Meter {
        subscription: f.text("subscription")?,
        meter_serial: f.text("meter_serial")?,
        info: f.object("info").and_then(|info| meter_info(&info)),
        device_token: f.text("device_token"),
    })
}

fn state(text: &str) -> Option<State> {
    Some(match text {
        "waiting" => State::Waiting,
        "accepted" => State::Accepted,
        "needs_review" => State::NeedsReview,
        "rejected" => State::Rejected,
        "discarded" => State::Discarded,
        _ => return None,
    })
}

pub fn declaration(f: &Fields) -> Option<Declaration> {
    Some(Declaration {
        id: f.uuid("id")?,
        subscription: f.text("subscription")?,
        meter_serial: f.text("meter_serial")?,
        reading: f.whole("reading")?,
        read_at: f.time("read_at")?,
        state: state(&f.text("state")?)?,
        code: f.text("code").and_then(|c| Code::from_str_opt(&c)),
        message: f.text("message"),
        tracking_code: f.text("tracking_code"),
        consumption_m3: f.whole("consumption_m3"),
        review_accepted: f.flag("review_accepted"),
        review_reason: f.text("review_reason"),
        clock_offset_ms: f.number("clock_offset_ms").filter(|n| n.is_finite()).map_or(0, |n| n as i64),
        corrects: f.uuid("corrects"),
        replaced_by: f.uuid("replaced_by"),
        device_id: f.uuid("device_id"),
        lang: f.text("lang"),
        answered_at: f.time("answered_at"),
    })
}

pub fn complaint(f: &Fields) -> Option<Complaint> {
    Some(Complaint {
        id: f.uuid("id")?,
        subscription: f.text("subscription")?,
        kind: ComplaintKind::from_str_opt(&f.text("kind")?)?,
        about: f.text("about"),
        text: f.text("text")?,
        made_at: f.time("made_at")?,
        received: f.flag("received"),
        message: f.text("message"),
        number: f.text("number"),
        answer: f.text("answer"),
    })
}

/// One result of `POST /api/v1/sync`, as far as the app keeps it (see `shared::wire::SyncResult`).
pub struct Outcome {
    pub id: Option<Uuid>,
    pub status: Status,
    pub code: Option<Code>,
    pub message: String,
    pub tracking_code: Option<String>,
    pub consumption_m3: Option<u64>,
    /// The earlier declaration this correction replaced.
    pub supersedes: Option<Uuid>,
}

pub fn outcome(f: &Fields) -> Option<Outcome> {
    Some(Outcome {
        id: f.uuid("id"),
        status: Status::from_str_opt(&f.text("status")?)?,
        code: f.text("code").and_then(|c| Code::from_str_opt(&c)),
        message: f.text("message")?,
        tracking_code: f.text("tracking_code"),
        consumption_m3: f.whole("consumption_m3"),
        supersedes: f.uuid("supersedes"),
    })
}
