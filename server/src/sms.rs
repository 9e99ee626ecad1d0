//! The SMS channel: messages pushed by the gateway, through one of three doors that all lead to
//! [`receive`]:
//!
//! - `POST /api/v1/sms/inbound`: Kontor's own shape (JSON or form), with the shared secret in a
//!   header, for gateways and relays that can send one;
//! - `POST /api/v1/sms/kavenegar/{secret}`: Kavenegar's forward (form fields `messageid`, `from`,
//!   `to`, `message`), which can only be given a URL, so the secret is part of it (and kept out
//!   of the logs, `http::redacted_path`);
//! - `POST /api/v1/sms/twilio`: Twilio's webhook (`MessageSid`, `From`, `To`, `Body`), proven by
//!   its `X-Twilio-Signature` and answered with empty TwiML (the reply goes through the queue).
//!
//! A message `<reading>*5*<subscription>` becomes a declaration judged like any other. It has no
//! meter serial: from the phone registered to the subscription it counts as verified; from any
//! other phone it is stored for review (`unverified_sender`). Its id comes from the gateway's
//! `message_id`, so a message delivered twice is one declaration with one reply.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::wire::{ApiErrorCode, ErrorBody, SmsInbound, SmsReply};
use shared::{Lang, TrackingCode, sms};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::http::{ApiError, HeadersAndBody};
use crate::replies::{ReplySender, Retry};
use crate::store::{Channel, Incoming, PhoneDeclaration};

/// How the SMS channel is set up. Without it, the webhook answers `404`.
#[derive(Clone)]
pub struct SmsConfig {
    /// The header that carries the shared secret.
    pub secret_header: HeaderName,
    /// Empty when messages are only fetched (`--sms-pull` without `--sms-secret`): then the
    /// doors that take pushed messages answer `404`.
    pub secret: String,
    /// The gateway adapter replies go through (`crate::gateways`).
    pub sender: Arc<dyn ReplySender>,
    pub retry: Retry,
    /// Wakes this instance's reply sender when a reply is queued.
    pub wake: Arc<tokio::sync::Notify>,
    /// Twilio's webhook, when Twilio delivers the messages.
    pub twilio: Option<TwilioWebhook>,
    /// The gateway's inbox, when messages are fetched from it (`crate::pull`).
    pub pull: Option<PullSettings>,
}

/// Where and how often messages are fetched, for gateways that keep them to be fetched.
#[derive(Clone)]
pub struct PullSettings {
    pub reader: Arc<dyn crate::gateways::InboxReader>,
    pub every: std::time::Duration,
}

/// What proves a request came from Twilio: its signature over the URL it called, made with the
/// account's auth token.
#[derive(Clone)]
pub struct TwilioWebhook {
    pub auth_token: String,
    /// The webhook's URL as configured in Twilio's console (`https://…/api/v1/sms/twilio`):
    /// behind a TLS proxy the server cannot see it.
    pub url: String,
}

impl SmsConfig {
    pub fn new(secret_header: HeaderName, secret: String, sender: Arc<dyn ReplySender>) -> Self {
        Self { secret_header, secret, sender, retry: Retry::default(), wake: Arc::default(), twilio: None, pull: None }
    }
}

/// Queues the reply to message `message_id` (once per message, however often it is delivered).
/// When it cannot be queued the message is answered `503`: the gateway delivers it again, and
/// the declaration, stored already, is replayed with the same reply.
async fn reply(state: &AppState, config: &SmsConfig, message_id: &str, to: &str, text: &str) -> Result<(), ApiError> {
    let answers = format!("sms:{message_id}");
    crate::replies::queue(&*state.store, &config.wake, &answers, to, text)
        .await
        .map_err(|e| ApiError::from_store(&e, Lang::Fa))
}

/// When the reading an SMS carries was taken, if the message is the web app's fallback for a
/// declaration the server already has: the receipt names it, and the same reading was taken when
/// the subscriber entered it in the app, however late the message arrives. The writer then judges
/// the two as one reading, whichever way the time window would have gone. Best effort: without
/// it the gateway's time stands.
async fn reading_time(state: &AppState, declaration: &shared::sms::SmsDeclaration) -> Option<OffsetDateTime> {
    let receipt = declaration.receipt.as_ref()?;
    match crate::store::by_receipt(&*state.store, &declaration.subscription, receipt).await {
        Ok(found) => found.filter(|d| d.reading == Some(declaration.reading.value())).map(|d| d.read_at),
        Err(e) => {
            tracing::warn!(error = %e, "looking up an SMS's receipt failed; dated by the gateway");
            None
        }
    }
}

/// Receives one SMS from the gateway and answers the text to send back.
#[utoipa::path(post, path = "/api/v1/sms/inbound", request_body(content = SmsInbound,
        description = "JSON or form-encoded (`application/x-www-form-urlencoded`) fields"), responses(
    (status = 200, description = "The reply to send to the sender, for every message", body = SmsReply),
    (status = 400, description = "A field is missing, or `message_id` or `from` is empty", body = ErrorBody),
    (status = 401, description = "The shared secret is missing or wrong; nothing is stored", body = ErrorBody),
    (status = 404, description = "The SMS channel is not configured", body = ErrorBody),
    (status = 415, description = "Neither JSON nor form-encoded", body = ErrorBody),
    (status = 503, description = "The database is unavailable: deliver the message again later", body = ErrorBody),
))]
pub async fn inbound(
    State(state): State<AppState>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Json<SmsReply>, ApiError> {
    let lang = Lang::Fa;
    let config = configured(&state)?;
    let given = headers.get(&config.secret_header).map(|v| v.as_bytes()).unwrap_or_default();
    if !crate::tokens::same_secret(given, config.secret.as_bytes()) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, ApiErrorCode::Unauthorized, lang));
    }
    let body = body.map_err(|r| ApiError::from_body(&r, lang))?;
    let message: SmsInbound = match crate::http::media_type(&headers).as_str() {
        "application/json" => serde_json::from_slice(&body).map_err(|_| ApiError::envelope(&body, lang))?,
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(&body)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidEnvelope, lang))?,
        _ => return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, ApiErrorCode::UnsupportedMediaType, lang)),
    };
    receive(&state, config, message).await.map(Json)
}

/// The SMS channel's settings, if messages may be pushed to it.
fn configured(state: &AppState) -> Result<&SmsConfig, ApiError> {
    state
        .sms
        .as_ref()
        .filter(|config| !config.secret.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, Lang::Fa))
}

/// A form body's fields, in order; `415` for a body that is not form-encoded.
fn form_fields(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    if crate::http::media_type(headers) != "application/x-www-form-urlencoded" {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, ApiErrorCode::UnsupportedMediaType, Lang::Fa));
    }
    Ok(form_urlencoded::parse(body).into_owned().collect())
}

fn field(fields: &[(String, String)], name: &str) -> Result<String, ApiError> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidEnvelope, Lang::Fa))
}

/// Kavenegar's fields, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct KavenegarForm {
    /// Kavenegar's id of the message.
    #[schema(min_length = 1, pattern = r"\S")]
    messageid: String,
    #[schema(min_length = 1, pattern = r"\S")]
    from: String,
    to: Option<String>,
    message: String,
}

/// Twilio's fields that Kontor reads (Twilio sends more, all of them signed), for the OpenAPI
/// document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
struct TwilioForm {
    #[schema(min_length = 1, pattern = r"\S")]
    MessageSid: String,
    #[schema(min_length = 1, pattern = r"\S")]
    From: String,
    To: Option<String>,
    Body: String,
}

/// Kavenegar's forward of a received message: `messageid`, `from`, `to` and `message` as form
/// fields, to a URL that carries the shared secret.
#[utoipa::path(post, path = "/api/v1/sms/kavenegar/{secret}",
    params(("secret" = String, Path, description = "The shared secret (`--sms-secret`)")),
    request_body(content = KavenegarForm, content_type = "application/x-www-form-urlencoded"),
    responses(
    (status = 200, description = "The reply to send to the sender", body = SmsReply),
    (status = 400, description = "A field is missing or empty", body = ErrorBody),
    (status = 401, description = "The secret in the URL is wrong; nothing is stored", body = ErrorBody),
    (status = 404, description = "The SMS channel is not configured", body = ErrorBody),
    (status = 413, description = "The body is too large", body = ErrorBody),
    (status = 415, description = "Not form-encoded", body = ErrorBody),
    (status = 503, description = "The database is unavailable: deliver the message again later", body = ErrorBody),
))]
pub async fn kavenegar(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Json<SmsReply>, ApiError> {
    let lang = Lang::Fa;
    let config = configured(&state)?;
    if !crate::tokens::same_secret(secret.as_bytes(), config.secret.as_bytes()) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, ApiErrorCode::Unauthorized, lang));
    }
    let body = body.map_err(|r| ApiError::from_body(&r, lang))?;
    let fields = form_fields(&headers, &body)?;
    let message = SmsInbound {
        message_id: field(&fields, "messageid")?,
        from: field(&fields, "from")?,
        to: field(&fields, "to").ok(),
        text: field(&fields, "message")?,
        received_at: None,
    };
    receive(&state, config, message).await.map(Json)
}

/// Twilio's signature: Base64 of HMAC-SHA1, keyed with the auth token, over the URL followed by
/// every POST field's name and value, sorted by name.
pub fn twilio_signature(auth_token: &str, url: &str, fields: &[(String, String)]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Twilio's webhook for a received message: checked by its signature, answered with empty TwiML.
#[utoipa::path(post, path = "/api/v1/sms/twilio",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the request")),
    responses(
    (status = 200, description = "Empty TwiML: the reply is sent through Twilio's Messages API", content_type = "text/xml", body = String),
    (status = 400, description = "A field is missing or empty", body = ErrorBody),
    (status = 401, description = "The signature is missing or wrong; nothing is stored", body = ErrorBody),
    (status = 404, description = "Twilio's webhook is not configured", body = ErrorBody),
    (status = 413, description = "The body is too large", body = ErrorBody),
    (status = 415, description = "Not form-encoded", body = ErrorBody),
    (status = 503, description = "The database is unavailable: Twilio may try again", body = ErrorBody),
))]
pub async fn twilio(
    State(state): State<AppState>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    let lang = Lang::Fa;
    let config = configured(&state)?;
    let Some(webhook) = config.twilio.as_ref() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, lang));
    };
    let body = body.map_err(|r| ApiError::from_body(&r, lang))?;
    let fields = form_fields(&headers, &body)?;
    let given = headers.get("x-twilio-signature").map(|v| v.as_bytes()).unwrap_or_default();
    let expected = twilio_signature(&webhook.auth_token, &webhook.url, &fields);
    if !crate::tokens::same_secret(given, expected.as_bytes()) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, ApiErrorCode::Unauthorized, lang));
    }
    let message = SmsInbound {
        message_id: field(&fields, "MessageSid")?,
        from: field(&fields, "From")?,
        to: field(&fields, "To").ok(),
        text: field(&fields, "Body")?,
        received_at: None,
    };
    receive(&state, config, message).await?;
    let twiml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";
    Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], twiml).into_response())
}

/// Judges one received message and queues its reply: what every door leads to.
pub(crate) async fn receive(state: &AppState, config: &SmsConfig, message: SmsInbound) -> Result<SmsReply, ApiError> {
    let lang = Lang::Fa;
    // The id is what makes a redelivery one declaration: an empty one would be shared by every
    // message without one, and the second sender would be refused as a conflict with the first.
    if message.message_id.trim().is_empty() || message.from.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidEnvelope, lang));
    }

    let declaration = match sms::parse(&message.text) {
        Ok(declaration) => declaration,
        Err(error) => {
            let text = sms::error_reply(error);
            reply(state, config, &message.message_id, &message.from, &text).await?;
            return Ok(SmsReply { reply: text, status: None, tracking_code: None });
        }
    };
    let received_at = message
        .received_at
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let received_at = reading_time(state, &declaration).await.unwrap_or(received_at);
    let incoming = Incoming::from_phone(PhoneDeclaration {
        channel: Channel::Sms,
        message_id: &message.message_id,
        sender: &message.from,
        declaration: &declaration,
        received_at,
    });
    let outcome = state.writer.submit(vec![incoming]).await.map_err(|e| {
        tracing::error!(error = %e, "sms declaration not stored");
        ApiError::from_write(&e, lang)
    })?;
    let Some(outcome) = outcome.into_iter().next() else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ApiErrorCode::Internal, lang));
    };
    let tracking_code = outcome.tracking_seq.and_then(TrackingCode::from_sequence).map(|c| c.to_string());
    let text = sms::outcome_reply(sms::outcome_message(outcome.code), tracking_code.as_deref(), outcome.consumption_m3);
    // A replay queues nothing new, but queues it if the first delivery stopped before it could.
    reply(state, config, &message.message_id, &message.from, &text).await?;
    Ok(SmsReply { reply: text, status: Some(outcome.status), tracking_code })
}

#[cfg(test)]
mod tests {
    /// The example of Twilio's request-validation documentation (and of its helper libraries'
    /// tests): this URL, these fields and the auth token `12345` give this signature.
    #[test]
    fn twilio_signatures_match_twilios_own_example() {
        let fields: Vec<(String, String)> = [
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("Caller", "+14158675309"),
            ("From", "+14158675309"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let signature = super::twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &fields);
        assert_eq!(signature, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }
}
