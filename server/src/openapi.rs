//! The OpenAPI document of sync API v1, generated from the wire types and the handlers, served at
//! `GET /api/v1/openapi.json`. It is the living version of `sync-api.md`.

use std::sync::OnceLock;

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kontor sync API",
        version = "1.0.0",
        description = "Meter-reading declarations from every channel, reconciled exactly once. \
            Every submission carries a client-made UUID: the same id sent again returns the first \
            outcome (`replayed: true`); the same id with other content is refused (`id_conflict`). \
            Make ids with UUIDv7 where you can: time-ordered ids are much cheaper for the server to \
            index than random ones (any UUID is accepted). \
            A submission with `corrects` (a mistyped reading fixed by its sender) replaces the \
            earlier one when that is still the meter's latest reading or waits for review, came from \
            the same device and was stored less than 24 hours ago; the result then names it in \
            `supersedes`. \
            Messages follow `Accept-Language` (Persian by default, English on request). \
            Tracking codes are digits only and end with a Damm check digit."
    ),
    paths(
        crate::http::healthz,
        crate::http::readyz,
        crate::http::verify,
        crate::http::sync,
        crate::sms::inbound,
        crate::sms::kavenegar,
        crate::sms::twilio,
        crate::billing::readings,
        crate::complaints::file,
        crate::complaints::updates,
        crate::photo::upload
    ),
    modifiers(&BillingToken),
    components(schemas(
        crate::photo::PhotoReceipt,
        shared::wire::VerifyRequest,
        shared::wire::VerifyResponse,
        shared::wire::MeterInfo,
        shared::wire::SyncRequest,
        shared::wire::Submission,
        shared::wire::ReadingInput,
        shared::wire::SyncResponse,
        shared::wire::SyncResult,
        shared::wire::SmsInbound,
        shared::wire::SmsReply,
        shared::wire::BillingPage,
        shared::wire::ComplaintsRequest,
        shared::wire::ComplaintSubmission,
        shared::wire::ComplaintKind,
        shared::wire::ComplaintsResponse,
        shared::wire::ComplaintResult,
        shared::wire::ComplaintStatus,
        shared::wire::ComplaintCode,
        shared::wire::UpdatesRequest,
        shared::wire::UpdatesResponse,
        shared::wire::ReviewUpdate,
        shared::wire::ComplaintAnswer,
        shared::wire::BillingReading,
        shared::wire::BillingKind,
        shared::wire::ErrorBody,
        shared::wire::ErrorDetail,
        shared::wire::ApiErrorCode,
        shared::Status,
        shared::Code,
    ))
)]
pub struct ApiDoc;

/// The billing system's bearer token, as a security scheme.
struct BillingToken;

impl utoipa::Modify for BillingToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The token set with --billing-token (KONTOR_BILLING_TOKEN)"))
            .build();
        components.add_security_scheme("billing_token", SecurityScheme::Http(scheme));
    }
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
}
