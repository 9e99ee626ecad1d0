//! The SMS gateways Kontor sends replies through, one small module each behind
//! [`crate::replies::ReplySender`], chosen with `--sms-gateway`:
//!
//! - `generic`: a GET to a URL template with `{to}` and `{text}` (Kavenegar's, Magfa's v1 and
//!   Payam Resan's GET APIs fit it, but a GET can only judge by the HTTP status);
//! - `kavenegar`, `smsir`, `ippanel`, `ghasedak`, `magfa`, `twilio`: each gateway's own send
//!   API, with its result read from the answer's body, where most of them report a refusal
//!   inside an HTTP 200.
//!
//! Every adapter gives up on a request after [`TIMEOUT`], and none lets a URL, a key, a number or
//! a text into its errors, which go to the logs and the console.

mod generic;
mod ghasedak;
mod ippanel;
mod kavenegar;
mod magfa;
mod smsir;
mod twilio;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

pub use generic::UrlTemplate;

use crate::replies::{LogSender, ReplySender, SendError};
use crate::store::PulledMessage;

/// How long a send may take before it counts as failed (and is retried).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The gateways there are adapters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Gateway {
    /// Replies only logged (and returned in the webhook's answer).
    None,
    Generic,
    Kavenegar,
    Smsir,
    Ippanel,
    Ghasedak,
    Magfa,
    Twilio,
}

/// What the adapters are given: which ones need what is checked at start. Its `Debug` shows
/// which settings are there, never the key or the URL template (which may hold a key).
#[derive(Clone, Default)]
pub struct GatewaySettings {
    /// The API key (Kavenegar, SMS.ir, IPPanel, Ghasedak), Magfa's password or Twilio's auth token.
    pub key: Option<String>,
    /// Twilio's account SID; Magfa's `username/domain`.
    pub account: Option<String>,
    /// The line (short code or number) replies are sent from.
    pub line: Option<String>,
    /// The API's address instead of the gateway's public one (a test stand-in, a proxy).
    pub base_url: Option<String>,
    /// The `generic` adapter's URL template.
    pub url_template: Option<String>,
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
        f.debug_struct("GatewaySettings")
            .field("key", &given(&self.key))
            .field("account", &self.account)
            .field("line", &self.line)
            .field("base_url", &self.base_url)
            .field("url_template", &given(&self.url_template))
            .finish()
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(TIMEOUT).build().context("building the gateway's HTTP client")
}

fn required<'a>(value: &'a Option<String>, flag: &str, gateway: &str) -> anyhow::Result<&'a str> {
    value.as_deref().filter(|v| !v.is_empty()).with_context(|| format!("--sms-gateway {gateway} needs {flag}"))
}

/// The adapter for `gateway`, or an error naming the setting it lacks.
pub fn sender(gateway: Gateway, settings: &GatewaySettings) -> anyhow::Result<Arc<dyn ReplySender>> {
    Ok(match gateway {
        Gateway::None => Arc::new(LogSender),
        Gateway::Generic => {
            Arc::new(UrlTemplate::new(required(&settings.url_template, "--sms-reply-url", "generic")?.to_owned())?)
        }
        Gateway::Kavenegar => Arc::new(kavenegar::Kavenegar {
            client: client()?,
            base: base(settings, kavenegar::BASE),
            key: required(&settings.key, "--sms-gateway-key", "kavenegar")?.to_owned(),
            line: settings.line.clone(),
        }),
        Gateway::Smsir => Arc::new(smsir(settings)?),
        Gateway::Ippanel => Arc::new(ippanel(settings)?),
        Gateway::Ghasedak => Arc::new(ghasedak(settings)?),
        Gateway::Magfa => Arc::new(magfa(settings)?),
        Gateway::Twilio => Arc::new(twilio::Twilio {
            client: client()?,
            base: base(settings, twilio::BASE),
            account: required(&settings.account, "--sms-gateway-account", "twilio")?.to_owned(),
            token: required(&settings.key, "--sms-gateway-key", "twilio")?.to_owned(),
            line: required(&settings.line, "--sms-gateway-line", "twilio")?.to_owned(),
        }),
    })
}

/// The inbox adapter for `gateway`, for `--sms-pull`: the gateways that keep received messages
/// for Kontor to fetch. The others push them to a webhook.
pub fn reader(gateway: Gateway, settings: &GatewaySettings) -> anyhow::Result<Arc<dyn InboxReader>> {
    Ok(match gateway {
        Gateway::Smsir => Arc::new(smsir(settings)?),
        Gateway::Ippanel => Arc::new(ippanel(settings)?),
        Gateway::Ghasedak => Arc::new(ghasedak(settings)?),
        Gateway::Magfa => Arc::new(magfa(settings)?),
        other => anyhow::bail!(
            "--sms-pull reads the inbox of smsir, ghasedak, magfa or ippanel; {} pushes its messages to a webhook \
             (docs/sms-gateways.md)",
            format!("{other:?}").to_lowercase()
        ),
    })
}

fn base(settings: &GatewaySettings, default: &str) -> String {
    settings.base_url.clone().unwrap_or_else(|| default.to_owned())
}

fn smsir(settings: &GatewaySettings) -> anyhow::Result<smsir::Smsir> {
    Ok(smsir::Smsir {
        client: client()?,
        base: base(settings, smsir::BASE),
        key: required(&settings.key, "--sms-gateway-key", "smsir")?.to_owned(),
        line: required(&settings.line, "--sms-gateway-line", "smsir")?
            .parse()
            .context("--sms-gateway-line: SMS.ir's line is a number")?,
    })
}

fn ippanel(settings: &GatewaySettings) -> anyhow::Result<ippanel::Ippanel> {
    Ok(ippanel::Ippanel {
        client: client()?,
        base: base(settings, ippanel::BASE),
        key: required(&settings.key, "--sms-gateway-key", "ippanel")?.to_owned(),
        line: required(&settings.line, "--sms-gateway-line", "ippanel")?.to_owned(),
    })
}

fn ghasedak(settings: &GatewaySettings) -> anyhow::Result<ghasedak::Ghasedak> {
    Ok(ghasedak::Ghasedak {
        client: client()?,
        base: base(settings, ghasedak::BASE),
        key: required(&settings.key, "--sms-gateway-key", "ghasedak")?.to_owned(),
        line: required(&settings.line, "--sms-gateway-line", "ghasedak")?.to_owned(),
    })
}

fn magfa(settings: &GatewaySettings) -> anyhow::Result<magfa::Magfa> {
    Ok(magfa::Magfa {
        client: client()?,
        base: base(settings, magfa::BASE),
        account: required(&settings.account, "--sms-gateway-account", "magfa")?.to_owned(),
        password: required(&settings.key, "--sms-gateway-key", "magfa")?.to_owned(),
        line: required(&settings.line, "--sms-gateway-line", "magfa")?.to_owned(),
    })
}

/// What one read of a gateway's inbox gave.
#[derive(Debug, Default)]
pub struct Fetched {
    pub messages: Vec<PulledMessage>,
    /// Where the next read starts, kept with the messages; `None` leaves the cursor as it was
    /// (an inbox that hands each message out once needs none).
    pub cursor: Option<String>,
}

/// Reads the messages a gateway received for Kontor (`crate::inbox` stores and judges them).
#[async_trait::async_trait]
pub trait InboxReader: Send + Sync + 'static {
    /// The gateway's name: its cursor's key and its messages' id prefix.
    fn name(&self) -> &'static str;
    /// The messages received since `cursor` (all those waiting, before the first read).
    async fn fetch(&self, cursor: Option<&str>) -> Result<Fetched, SendError>;
}

/// An Iranian mobile number given as a bare number (`9121234567`, as a JSON number loses its
/// leading zero) written the way it is dialled, `09121234567`; anything else as it came.
fn mobile(value: &serde_json::Value) -> String {
    let text = text_of(value);
    if text.len() == 10 && text.starts_with('9') && text.bytes().all(|b| b.is_ascii_digit()) {
        format!("0{text}")
    } else {
        text
    }
}

/// An id for a message its gateway gives none for: `prefix:` and the start of a SHA-256 over
/// the message as the gateway gave it (sender, line, time and text), so that the same message
/// read again gets the same id.
fn derived_id(prefix: &str, item: &serde_json::Value) -> String {
    format!("{prefix}:{}", &crate::tokens::token_hash(&item.to_string())[..24])
}

/// A Unix time in seconds as RFC 3339.
fn unix_time(value: &serde_json::Value) -> Option<String> {
    let seconds = value.as_i64().or_else(|| value.as_str()?.trim().parse().ok())?;
    time::OffsetDateTime::from_unix_timestamp(seconds).ok()?.format(&time::format_description::well_known::Rfc3339).ok()
}

/// A local time as Iranian gateways write it (`2026-12-07 14:05:09` or `2026-12-07T14:05:09`,
/// with or without fractions), taken as Iran's time (UTC+03:30, without daylight saving since
/// 2022), as RFC 3339.
fn tehran_time(value: &serde_json::Value) -> Option<String> {
    let text = value.as_str()?.trim();
    let (date, clock) = text.split_once([' ', 'T'])?;
    let clock = clock.split(['.', 'Z', '+']).next()?;
    let parsed = time::PrimitiveDateTime::parse(
        &format!("{date} {clock}"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()?;
    let tehran = time::UtcOffset::from_hms(3, 30, 0).ok()?;
    parsed.assume_offset(tehran).format(&time::format_description::well_known::Rfc3339).ok()
}

/// Reads an answer's body as JSON, whatever its HTTP status: gateways explain refusals there.
async fn json_of(response: reqwest::Response) -> Result<(reqwest::StatusCode, serde_json::Value), SendError> {
    let status = response.status();
    let bytes = response.bytes().await?;
    match serde_json::from_slice(&bytes) {
        Ok(json) => Ok((status, json)),
        // No JSON: a proxy's error page, say. The status is all there is to go on.
        Err(_) if !status.is_success() => Err(SendError::Refused(status)),
        Err(e) => Err(SendError::Unreadable(format!("not JSON ({e})"))),
    }
}

/// A JSON value as text, for result codes that come as numbers or strings.
fn text_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod standin;
