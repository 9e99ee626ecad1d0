//! The billing hand-off: `GET /api/v1/billing/readings` pages through the billing feed for the
//! billing system, and `kontor export-readings` writes it as CSV or JSON lines.
//!
//! The feed (see the store's `billing_feed` migrations) holds an entry for every reading when it
//! starts to count for billing, and another whenever its consumption changes later (a
//! correction) or staff void it, in the order they happened; a cursor is a position in it, so
//! paging from the last cursor handed out never skips or repeats an entry, even while new ones
//! arrive. The billing system reads it in order and keeps each tracking code's latest entry: per
//! meter, those entries' consumption adds up to the gas the meter passed since its billed
//! reading.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use shared::Lang;
use shared::wire::{ApiErrorCode, BillingPage, ErrorBody};
use time::OffsetDateTime;

use crate::AppState;
use crate::http::{ApiError, bearer_token, refused};
use crate::limits::Key;
use crate::store::{AuditEntry, BillingEntry, Store, StoreError};

/// The shortest billing token `kontor serve` starts with.
pub const MIN_TOKEN_CHARS: usize = 32;

/// Refuses a billing token a guesser could find: shorter than [`MIN_TOKEN_CHARS`], or made of
/// fewer than eight different characters.
pub fn strong_enough(token: &str) -> anyhow::Result<()> {
    let distinct: std::collections::HashSet<char> = token.chars().collect();
    if token.chars().count() < MIN_TOKEN_CHARS || distinct.len() < 8 {
        anyhow::bail!(
            "the billing token is too weak: use at least {MIN_TOKEN_CHARS} random characters, e.g. `openssl rand -hex 32`"
        );
    }
    Ok(())
}

/// The most readings one page holds.
pub const MAX_PAGE: u32 = 10_000;
/// Readings in a page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 1_000;

/// What the billing system asks for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next` of the previous page; the feed's start when absent.
    pub after: Option<String>,
    /// At most this many readings: 1,000 by default, and never more than 10,000 (a larger
    /// number is taken as 10,000, and 0 as 1).
    #[param(minimum = 0, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
}

/// Reads a cursor: a position in the feed. `None` when it is not one of ours.
pub fn parse_cursor(cursor: Option<&str>) -> Option<u64> {
    match cursor.map(str::trim) {
        None | Some("") => Some(0),
        Some(text) => text.parse().ok(),
    }
}

/// What a page of the feed can be refused for.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The cursor is past the feed's end: this server never handed it out.
    #[error("cursor {0} is past the end of the billing feed ({1}): it was not handed out by this server")]
    UnknownCursor(u64, u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of the feed after `after`, and the cursor to continue from. A cursor past the end is
/// refused rather than answered with an empty page: a billing system pointed at another server,
/// or at a database restored from an older backup, must hear that it would miss entries.
pub async fn page(store: &dyn Store, after: u64, limit: u32) -> Result<(Vec<BillingEntry>, u64, bool), PageError> {
    let limit = limit.clamp(1, MAX_PAGE);
    // One more than asked tells whether more are waiting.
    let mut entries = store.billing_feed(after, limit + 1).await?;
    if entries.is_empty() && after > 0 {
        let end = store.billing_end().await?;
        if after > end {
            return Err(PageError::UnknownCursor(after, end));
        }
    }
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next = entries.last().map_or(after, |e| e.position);
    Ok((entries, next, more))
}

/// The billing feed: readings that count, their corrections and voids, in a stable order,
/// resumable from a cursor. Keep each tracking code's latest entry.
#[utoipa::path(get, path = "/api/v1/billing/readings", params(PageQuery), responses(
    (status = 200, description = "A page of the feed; continue from `next`", body = BillingPage),
    (status = 400, description = "`after` is not a cursor this server handed out", body = ErrorBody),
    (status = 401, description = "The billing token is missing or wrong (counted against the client's limit, and audited)", body = ErrorBody),
    (status = 429, description = "Too many wrong tokens from this client; see `Retry-After`", body = ErrorBody),
    (status = 404, description = "The billing hand-off is not configured", body = ErrorBody),
    (status = 503, description = "The database is unavailable: ask again later", body = ErrorBody),
), security(("billing_token" = [])))]
pub async fn readings(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<BillingPage>, ApiError> {
    let lang = Lang::En;
    let Some(expected) = state.billing_token.as_deref() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, lang));
    };
    // A wrong token is a failure of the client's, counted and kept in the audit log.
    let client_ip = crate::http::client_ip(&state, peer, &headers);
    let client = Key::Client(client_ip);
    let mut tries = state.limiter.reserve(&[(client.clone(), 1)]).await.map_err(|r| refused(r, lang))?;
    let given = bearer_token(&headers).unwrap_or("");
    if !crate::tokens::same_secret(given.as_bytes(), expected.as_bytes()) {
        tries.failed(&client, 1).await;
        let detail = client_ip.to_string();
        let entry =
            AuditEntry { at: OffsetDateTime::now_utc(), username: "billing", action: "token_failed", detail: &detail };
        if let Err(e) = state.store.audit(&entry).await {
            tracing::error!(error = %crate::writer::error_chain(&e), "billing: recording a failed token failed");
        }
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, ApiErrorCode::Unauthorized, lang));
    }
    drop(tries);
    let Ok(Query(query)) = query else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidCursor, lang));
    };
    let Some(after) = parse_cursor(query.after.as_deref()) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidCursor, lang));
    };
    let store = state.store.as_ref();
    let (entries, next, more) = match page(store, after, query.limit.unwrap_or(DEFAULT_PAGE)).await {
        Ok(page) => page,
        Err(PageError::UnknownCursor(..)) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidCursor, lang));
        }
        Err(PageError::Store(e)) => return Err(ApiError::from_store(&e, lang)),
    };
    let detail = format!("api: after {after}, {} reading(s), next {next}", entries.len());
    let entry = AuditEntry { at: OffsetDateTime::now_utc(), username: "billing", action: "export", detail: &detail };
    store.audit(&entry).await.map_err(|e| ApiError::from_store(&e, lang))?;
    Ok(Json(BillingPage {
        readings: entries.iter().map(BillingEntry::to_wire).collect(),
        next: next.to_string(),
        more,
    }))
}

/// How `kontor export-readings` writes the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header, then one row per reading.
    Csv,
    /// One document: `{"readings": […], "next": "…"}`.
    Json,
}

/// Writes the billing feed after `after` as CSV (with a header) or as one JSON document; answers
/// how many readings it wrote and the cursor to continue from.
pub async fn export(
    store: &dyn Store,
    mut after: u64,
    format: Format,
    out: &mut impl std::io::Write,
) -> anyhow::Result<(u64, u64)> {
    let json = format == Format::Json;
    // CSV rows are made a page at a time, then written out.
    let mut csv = csv::Writer::from_writer(Vec::new());
    if json {
        write!(out, "{{\"readings\":[")?;
    } else {
        csv.write_record([
            "cursor",
            "tracking_code",
            "subscription",
            "meter_serial",
            "reading",
            "read_at",
            "consumption_m3",
            "channel",
            "approved_on_review",
            "kind",
            "replaces",
            "replaced_consumption_m3",
        ])?;
    }
    let mut count = 0u64;
    loop {
        let (entries, next, more) = page(store, after, MAX_PAGE).await?;
        for entry in &entries {
            let r = entry.to_wire();
            if json {
                let separator = if count == 0 { "" } else { "," };
                write!(out, "{separator}{}", serde_json::to_string(&r)?)?;
            } else {
                let read_at = r.read_at.format(&time::format_description::well_known::Rfc3339)?;
                let consumption = r.consumption_m3.map(|c| c.to_string()).unwrap_or_default();
                csv.write_record([
                    r.cursor.as_str(),
                    &r.tracking_code,
                    &r.subscription,
                    &r.meter_serial,
                    &r.reading.to_string(),
                    &read_at,
                    &consumption,
                    &r.channel,
                    if r.approved_on_review { "true" } else { "false" },
                    r.kind.as_str(),
                    r.replaces.as_deref().unwrap_or(""),
                    &r.replaced_consumption_m3.map(|c| c.to_string()).unwrap_or_default(),
                ])?;
            }
            count += 1;
        }
        if !json {
            let page = std::mem::replace(&mut csv, csv::Writer::from_writer(Vec::new()));
            out.write_all(&page.into_inner().map_err(|e| anyhow::anyhow!("writing csv: {e}"))?)?;
        }
        after = next;
        if !more {
            break;
        }
    }
    if json {
        writeln!(out, "],\"next\":\"{after}\"}}")?;
    }
    out.flush()?;
    Ok((count, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors() {
        assert_eq!(parse_cursor(None), Some(0));
        assert_eq!(parse_cursor(Some("")), Some(0));
        assert_eq!(parse_cursor(Some(" 42 ")), Some(42));
        assert_eq!(parse_cursor(Some("-1")), None);
        assert_eq!(parse_cursor(Some("abc")), None);
    }
}
