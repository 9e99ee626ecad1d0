//! The SMS channel: the gateway's inbound webhook, `POST /api/v1/sms/inbound`.
//!
//! A message `<reading>*5*<subscription>` becomes a declaration judged like any other. It has no
//! meter serial: from the phone registered to the subscription it counts as verified; from any
//! other phone it is stored for review (`unverified_sender`). Its id comes from the gateway's
//! `message_id`, so a message delivered twice is one declaration with one reply.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode, header};
use shared::wire::{ApiErrorCode, ErrorBody, SmsInbound, SmsReply};
use shared::{Lang, TrackingCode, sms};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::http::{ApiError, HeadersAndBody};
use crate::replies::{ReplySender, Retry, send_in_background};
use crate::store::{Channel, Incoming, PhoneDeclaration};

/// How the SMS channel is set up. Without it, the webhook answers `404`.
#[derive(Clone)]
pub struct SmsConfig {
    /// The header that carries the shared secret.
    pub secret_header: HeaderName,
    pub secret: String,
    pub sender: Arc<dyn ReplySender>,
    pub retry: Retry,
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
    let Some(config) = state.sms.as_ref() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, lang));
    };
    let given = headers.get(&config.secret_header).map(|v| v.as_bytes()).unwrap_or_default();
    if !crate::tokens::same_secret(given, config.secret.as_bytes()) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, ApiErrorCode::Unauthorized, lang));
    }
    let body = body.map_err(|r| ApiError::from_body(&r, lang))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let message: SmsInbound = match mime.as_str() {
        "application/json" => serde_json::from_slice(&body).map_err(|_| ApiError::envelope(&body, lang))?,
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(&body)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidEnvelope, lang))?,
        _ => return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, ApiErrorCode::UnsupportedMediaType, lang)),
    };
    // The id is what makes a redelivery one declaration: an empty one would be shared by every
    // message without one, and the second sender would be refused as a conflict with the first.
    if message.message_id.trim().is_empty() || message.from.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidEnvelope, lang));
    }

    let declaration = match sms::parse(&message.text) {
        Ok(declaration) => declaration,
        Err(error) => {
            let reply = sms::error_reply(error);
            send_in_background(config.sender.clone(), config.retry, message.from.clone(), reply.clone());
            return Ok(Json(SmsReply { reply, status: None, tracking_code: None }));
        }
    };
    let received_at = message
        .received_at
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let received_at = reading_time(&state, &declaration).await.unwrap_or(received_at);
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
    let reply =
        sms::outcome_reply(sms::outcome_message(outcome.code), tracking_code.as_deref(), outcome.consumption_m3);
    if !outcome.replayed {
        send_in_background(config.sender.clone(), config.retry, message.from.clone(), reply.clone());
    }
    Ok(Json(SmsReply { reply, status: Some(outcome.status), tracking_code }))
}
