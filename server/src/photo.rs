//! Meter photos as uploads: what a picture must be to be kept, and what is taken out of it.
//!
//! [`check`] reads a JPEG or WebP file's structure (never its pixels: nothing is decoded on the
//! server) and answers a copy fit to store, or why it is refused:
//! - the real type is read from the bytes (JPEG's markers, WebP's RIFF chunks), not from the
//!   request's header or a file name: a script or an HTML page called `photo.jpg` is refused;
//! - the size is bounded ([`MAX_BYTES`]), and so are the dimensions the file declares
//!   ([`MAX_SIDE`], [`MAX_PIXELS`]): a small file that declares a huge picture (a decompression
//!   bomb, which would hang the reviewer's browser) is refused before anyone decodes it;
//! - metadata that could give away where and by whom the picture was taken is removed: in a JPEG
//!   every application segment but JFIF (APP0), the colour profile (APP2) and Adobe's colour
//!   transform (APP14), and every comment; in a WebP the `EXIF` and `XMP ` chunks, with their
//!   flags cleared;
//! - anything after the picture's end (JPEG's EOI, the RIFF's declared size) is dropped, so a
//!   file that is both a picture and something else keeps only the picture;
//! - animated WebP is refused: a meter's dial is one frame.
//!
//! [`upload`] is `PUT /api/v1/declarations/{id}/photo`: the photo follows its declaration on a
//! request of its own, after the reading is stored, and may be sent again as often as the
//! connection drops (the same bytes are a replay). The declaration's id is the capability: it is
//! a random UUID that only the phone that made the declaration knows (the server never shows it;
//! the console names declarations by their sequence), so no other proof is asked. Staff see the
//! photo in the console (`console::photo`); [`forget_old`] deletes photos past the retention.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sha2::{Digest as _, Sha256};
use shared::wire::{ApiErrorCode, ErrorBody};
use uuid::Uuid;

use crate::AppState;
use crate::http::{ApiError, HeadersAndBody};
use crate::store::{NewPhoto, PutPhoto};

/// The answer to a stored photo.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PhotoReceipt {
    /// SHA-256 of the upload as sent, in hex.
    pub sha256: String,
    /// The bytes kept (the upload without its metadata).
    pub stored_bytes: usize,
    pub width: u32,
    pub height: u32,
    /// Whether this upload was stored before (a retry).
    pub replayed: bool,
}

/// A picture's bytes, for the OpenAPI document (`type: string, format: binary`).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Picture(Vec<u8>);

/// Receives the photo of a declaration the app has sent.
#[utoipa::path(put, path = "/api/v1/declarations/{id}/photo",
    params(("id" = Uuid, Path, description = "The declaration's id, as the app sent it in `/api/v1/sync`")),
    request_body(content(
        (Picture = "image/jpeg"),
        (Picture = "image/webp"),
    ), description = "The picture, at most 512 KiB and 16 megapixels"),
    responses(
    (status = 201, description = "Stored, without its metadata", body = PhotoReceipt),
    (status = 200, description = "This same photo was stored before: a retry", body = PhotoReceipt),
    (status = 400, description = "Not a JPEG or WebP picture (checked from its bytes), malformed or animated", body = ErrorBody),
    (status = 404, description = "No declaration from the app has this id yet: send the reading, then the photo", body = ErrorBody),
    (status = 409, description = "Another photo is stored for this declaration", body = ErrorBody),
    (status = 413, description = "Over 512 KiB, or declaring more than 16 megapixels or 4096 pixels a side", body = ErrorBody),
    (status = 415, description = "Neither `image/jpeg` nor `image/webp`", body = ErrorBody),
    (status = 503, description = "The database is unavailable: send it again later", body = ErrorBody),
))]
pub async fn upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<(StatusCode, Json<PhotoReceipt>), ApiError> {
    let lang = crate::http::lang_of(&headers);
    let refuse = |status: StatusCode, code: ApiErrorCode| ApiError::new(status, code, lang);
    let Ok(id) = Uuid::parse_str(&id) else {
        return Err(refuse(StatusCode::NOT_FOUND, ApiErrorCode::UnknownDeclaration));
    };
    if Kind::from_media_type(&crate::http::media_type(&headers)).is_none() {
        return Err(refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, ApiErrorCode::UnsupportedPictureType));
    }
    let body = body.map_err(|r| ApiError::from_body(&r, lang))?;
    // The declaration first: a photo for one that has not arrived waits, whatever it is.
    let declaration = state.store.declaration_by_id(id).await.map_err(|e| ApiError::from_store(&e, lang))?;
    if declaration.is_none_or(|d| d.channel != crate::store::Channel::App.as_str()) {
        return Err(refuse(StatusCode::NOT_FOUND, ApiErrorCode::UnknownDeclaration));
    }
    let checked = check(&body).map_err(|e| match e {
        PhotoError::TooManyBytes | PhotoError::TooLarge { .. } => {
            refuse(StatusCode::PAYLOAD_TOO_LARGE, ApiErrorCode::PictureTooLarge)
        }
        PhotoError::NotAPicture | PhotoError::Malformed | PhotoError::Animated => {
            refuse(StatusCode::BAD_REQUEST, ApiErrorCode::NotAPicture)
        }
    })?;
    let sha256 = crate::tokens::hex(&Sha256::digest(&body));
    let photo = NewPhoto {
        sha256: &sha256,
        media_type: checked.kind.media_type(),
        width: checked.width,
        height: checked.height,
        bytes: &checked.bytes,
        now_ms: crate::store::now_ms(),
    };
    let put = state.store.photos().put_photo(id, &photo).await.map_err(|e| ApiError::from_store(&e, lang))?;
    let receipt = |replayed| PhotoReceipt {
        sha256: sha256.clone(),
        stored_bytes: checked.bytes.len(),
        width: checked.width,
        height: checked.height,
        replayed,
    };
    match put {
        PutPhoto::Stored => {
            tracing::info!(bytes = body.len(), stored = checked.bytes.len(), "meter photo stored");
            Ok((StatusCode::CREATED, Json(receipt(false))))
        }
        PutPhoto::Replayed => Ok((StatusCode::OK, Json(receipt(true)))),
        PutPhoto::Different => Err(refuse(StatusCode::CONFLICT, ApiErrorCode::PhotoExists)),
    }
}

/// Deletes the photos older than `retention`, every hour until `stop` says so.
pub async fn forget_old(
    store: std::sync::Arc<dyn crate::store::Store>,
    retention: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let before = crate::store::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match store.photos().forget_photos_before(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "meter photos past their retention deleted"),
            Err(e) => tracing::warn!(error = %crate::writer::error_chain(&e), "old meter photos could not be deleted"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The largest upload kept. The app sends about 60 KB; a camera's own JPEG from another client
/// may be larger.
pub const MAX_BYTES: usize = 512 * 1024;
/// The longest side a picture may declare, in pixels.
pub const MAX_SIDE: u32 = 4096;
/// The most pixels a picture may declare (a 4000 × 3000 camera picture is 12 million).
pub const MAX_PIXELS: u64 = 16_000_000;

/// The picture types kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Webp,
}

impl Kind {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "image/jpeg" => Some(Self::Jpeg),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// A picture fit to store: its type, its declared size and its bytes without metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub kind: Kind,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Why a picture is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("the picture is over {MAX_BYTES} bytes")]
    TooManyBytes,
    #[error("not a JPEG or WebP picture")]
    NotAPicture,
    #[error("the picture is cut short or malformed")]
    Malformed,
    #[error("the picture declares {width} × {height} pixels, over the limit")]
    TooLarge { width: u32, height: u32 },
    #[error("an animated picture")]
    Animated,
}

/// Checks `bytes` as a picture and answers a copy without metadata; see the module's doc.
pub fn check(bytes: &[u8]) -> Result<Checked, PhotoError> {
    if bytes.len() > MAX_BYTES {
        return Err(PhotoError::TooManyBytes);
    }
    let (kind, width, height, stripped) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (width, height, stripped) = jpeg(bytes)?;
        (Kind::Jpeg, width, height, stripped)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        let (width, height, stripped) = webp(bytes)?;
        (Kind::Webp, width, height, stripped)
    } else {
        return Err(PhotoError::NotAPicture);
    };
    if width == 0 || height == 0 {
        return Err(PhotoError::Malformed);
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(PhotoError::TooLarge { width, height });
    }
    Ok(Checked { kind, width, height, bytes: stripped })
}

fn u16_be(bytes: &[u8], at: usize) -> Result<u16, PhotoError> {
    bytes.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(PhotoError::Malformed)
}

fn u32_le(bytes: &[u8], at: usize) -> Result<u32, PhotoError> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or(PhotoError::Malformed)
}

/// Whether a JPEG marker starts a frame (SOF0–SOF15 but DHT, JPG and DAC), which carries the
/// picture's size.
fn is_frame(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Whether a JPEG segment is kept: JFIF, the colour profile and Adobe's colour transform, and
/// every segment the picture itself needs (tables, frames, scans). Other application segments
/// (EXIF and XMP in APP1, IPTC in APP13, makers' own) and comments are dropped.
fn keeps(marker: u8) -> bool {
    match marker {
        0xE0 | 0xE2 | 0xEE => true,
        0xE1 | 0xE3..=0xED | 0xEF | 0xFE => false,
        _ => true,
    }
}

/// Walks a JPEG's segments; answers its size and its bytes without dropped segments, up to EOI.
fn jpeg(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), PhotoError> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut at = 2;
    let mut size = None;
    loop {
        // A marker: 0xFF, possibly repeated as fill, then its code.
        if bytes.get(at) != Some(&0xFF) {
            return Err(PhotoError::Malformed);
        }
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let marker = *bytes.get(at).ok_or(PhotoError::Malformed)?;
        at += 1;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                break;
            }
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&[0xFF, marker]);
                continue;
            }
            // A second start of image inside the first.
            0xD8 | 0x00 => return Err(PhotoError::Malformed),
            _ => {}
        }
        let length = usize::from(u16_be(bytes, at)?);
        if length < 2 {
            return Err(PhotoError::Malformed);
        }
        let segment = bytes.get(at..at + length).ok_or(PhotoError::Malformed)?;
        if is_frame(marker) {
            let height = u32::from(u16_be(segment, 3)?);
            let width = u32::from(u16_be(segment, 5)?);
            size = Some((width, height));
        }
        if keeps(marker) {
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(segment);
        }
        at += length;
        if marker == 0xDA {
            if size.is_none() {
                return Err(PhotoError::Malformed);
            }
            // Entropy-coded data, up to the next marker that is neither a stuffed 0xFF nor a
            // restart: the data's own 0xFF bytes are always followed by 0x00 or a restart.
            let start = at;
            loop {
                let byte = *bytes.get(at).ok_or(PhotoError::Malformed)?;
                if byte == 0xFF {
                    let next = *bytes.get(at + 1).ok_or(PhotoError::Malformed)?;
                    if next != 0x00 && !(0xD0..=0xD7).contains(&next) {
                        break;
                    }
                    at += 2;
                } else {
                    at += 1;
                }
            }
            out.extend_from_slice(&bytes[start..at]);
        }
    }
    let (width, height) = size.ok_or(PhotoError::Malformed)?;
    Ok((width, height, out))
}

/// Walks a WebP's chunks; answers its size and its bytes without EXIF and XMP, up to the RIFF's
/// declared end.
fn webp(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), PhotoError> {
    let declared = usize::try_from(u32_le(bytes, 4)?).map_err(|_| PhotoError::Malformed)?;
    let end = declared.checked_add(8).ok_or(PhotoError::Malformed)?;
    let riff = bytes.get(..end).ok_or(PhotoError::Malformed)?;
    let mut chunks = Vec::new();
    let mut size = None;
    let mut extended = None;
    let mut at = 12;
    while at < riff.len() {
        let fourcc: [u8; 4] = riff.get(at..at + 4).ok_or(PhotoError::Malformed)?.try_into().expect("four bytes");
        let length = usize::try_from(u32_le(riff, at + 4)?).map_err(|_| PhotoError::Malformed)?;
        let padded = length.checked_add(length % 2).ok_or(PhotoError::Malformed)?;
        let data = riff.get(at + 8..at + 8 + length).ok_or(PhotoError::Malformed)?;
        match &fourcc {
            b"VP8 " => {
                // A key frame's tag (3 bytes), the start code, then 14-bit width and height.
                if data.get(3..6) != Some(&[0x9D, 0x01, 0x2A]) {
                    return Err(PhotoError::Malformed);
                }
                let dims = data.get(6..10).ok_or(PhotoError::Malformed)?;
                let width = u32::from(u16::from_le_bytes([dims[0], dims[1]]) & 0x3FFF);
                let height = u32::from(u16::from_le_bytes([dims[2], dims[3]]) & 0x3FFF);
                size = size.or(Some((width, height)));
            }
            b"VP8L" => {
                // The signature 0x2F, then width − 1 and height − 1 in 14 bits each.
                if data.first() != Some(&0x2F) || data.len() < 5 {
                    return Err(PhotoError::Malformed);
                }
                let bits = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
                size = size.or(Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)));
            }
            b"VP8X" => {
                if data.len() < 10 {
                    return Err(PhotoError::Malformed);
                }
                if data[0] & 0x02 != 0 {
                    return Err(PhotoError::Animated);
                }
                let width = u32::from_le_bytes([data[4], data[5], data[6], 0]) + 1;
                let height = u32::from_le_bytes([data[7], data[8], data[9], 0]) + 1;
                extended = Some((width, height));
            }
            b"ANIM" | b"ANMF" => return Err(PhotoError::Animated),
            _ => {}
        }
        if !matches!(&fourcc, b"EXIF" | b"XMP ") {
            let mut chunk = riff[at..at + 8].to_vec();
            chunk.extend_from_slice(data);
            if length % 2 == 1 {
                chunk.push(0);
            }
            if &fourcc == b"VP8X" {
                // Nothing says EXIF or XMP follows any more.
                chunk[8] &= !(0x08 | 0x04);
            }
            chunks.push(chunk);
        }
        at += 8 + padded;
    }
    // The canvas of an extended file is its size; its frame may not be larger.
    let (width, height) = match (extended, size) {
        (Some(canvas), Some(frame)) if frame.0 <= canvas.0 && frame.1 <= canvas.1 => canvas,
        (Some(_), _) => return Err(PhotoError::Malformed),
        (None, Some(frame)) => frame,
        (None, None) => return Err(PhotoError::Malformed),
    };
    let body: usize = chunks.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(12 + body);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&u32::try_from(4 + body).map_err(|_| PhotoError::Malformed)?.to_le_bytes());
    out.extend_from_slice(b"WEBP");
    for chunk in chunks {
        out.extend_from_slice(&chunk);
    }
    Ok((width, height, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG's structure (no real pixels: nothing here decodes them): SOI, the given segments,
    /// a frame of `width` × `height`, a scan with a stuffed 0xFF and a restart, EOI.
    pub(crate) fn jpeg_of(width: u16, height: u16, extra: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        let mut segment = |marker: u8, data: &[u8]| {
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(&u16::try_from(data.len() + 2).expect("short").to_be_bytes());
            out.extend_from_slice(data);
        };
        segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        for (marker, data) in extra {
            segment(*marker, data);
        }
        segment(0xDB, &[0u8; 65]);
        let mut frame = vec![8];
        frame.extend_from_slice(&height.to_be_bytes());
        frame.extend_from_slice(&width.to_be_bytes());
        frame.extend_from_slice(&[1, 1, 0x11, 0]);
        segment(0xC0, &frame);
        segment(0xC4, &[0u8; 20]);
        segment(0xDA, &[1, 1, 0, 0, 0x3F, 0]);
        out.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    #[test]
    fn a_jpeg_loses_its_metadata_and_keeps_its_picture() {
        let gps = b"Exif\0\0MM\0*GPSLatitude 35.6892 GPSLongitude 51.3890";
        let original = jpeg_of(640, 480, &[(0xE1, gps), (0xFE, b"taken at home"), (0xED, b"Photoshop 3.0 IPTC")]);
        let checked = check(&original).expect("kept");
        assert_eq!((checked.kind, checked.width, checked.height), (Kind::Jpeg, 640, 480));
        let text = String::from_utf8_lossy(&checked.bytes);
        assert!(!text.contains("GPS") && !text.contains("home") && !text.contains("IPTC"), "{text}");
        assert_eq!(checked.bytes, jpeg_of(640, 480, &[]), "what is left is the picture, byte for byte");
        assert_eq!(check(&checked.bytes).expect("again").bytes, checked.bytes, "stripping twice changes nothing");
    }

    #[test]
    fn whatever_follows_the_picture_is_dropped() {
        let mut polyglot = jpeg_of(64, 64, &[]);
        polyglot.extend_from_slice(b"<script>alert(1)</script>");
        assert_eq!(check(&polyglot).expect("kept").bytes, jpeg_of(64, 64, &[]));
    }

    #[test]
    fn what_is_not_a_picture_is_refused() {
        assert_eq!(check(b"#!/bin/sh\nrm -rf /\n"), Err(PhotoError::NotAPicture));
        assert_eq!(check(b"<html><script>alert(1)</script></html>"), Err(PhotoError::NotAPicture));
        assert_eq!(check(b""), Err(PhotoError::NotAPicture));
        let whole = jpeg_of(64, 64, &[]);
        for cut in [3, 10, 40, whole.len() - 2] {
            assert_eq!(check(&whole[..cut]), Err(PhotoError::Malformed), "cut at {cut}");
        }
        // A scan before any frame says how large the picture is.
        let mut no_frame = vec![0xFF, 0xD8, 0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0, 0x12, 0xFF, 0xD9];
        assert_eq!(check(&no_frame), Err(PhotoError::Malformed));
        no_frame[3] = 0xD8;
        assert_eq!(check(&no_frame), Err(PhotoError::Malformed));
    }

    #[test]
    fn a_picture_that_declares_too_many_pixels_is_refused_undecoded() {
        let bomb = jpeg_of(65_000, 65_000, &[]);
        assert!(bomb.len() < 300, "a few hundred bytes");
        assert_eq!(check(&bomb), Err(PhotoError::TooLarge { width: 65_000, height: 65_000 }));
        assert_eq!(check(&jpeg_of(4096, 4096, &[])), Err(PhotoError::TooLarge { width: 4096, height: 4096 }));
        assert!(check(&jpeg_of(4000, 3000, &[])).is_ok());
        assert_eq!(check(&jpeg_of(0, 10, &[])), Err(PhotoError::Malformed));
        let mut heavy = jpeg_of(64, 64, &[]);
        heavy.resize(MAX_BYTES + 1, 0);
        assert_eq!(check(&heavy), Err(PhotoError::TooManyBytes));
    }

    fn chunk(fourcc: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = fourcc.to_vec();
        out.extend_from_slice(&u32::try_from(data.len()).expect("short").to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&u32::try_from(4 + body.len()).expect("short").to_le_bytes());
        out.extend_from_slice(b"WEBP");
        out.extend_from_slice(&body);
        out
    }

    fn vp8(width: u16, height: u16) -> Vec<u8> {
        let mut data = vec![0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A];
        data.extend_from_slice(&width.to_le_bytes());
        data.extend_from_slice(&height.to_le_bytes());
        data.extend_from_slice(&[0u8; 9]);
        chunk(b"VP8 ", &data)
    }

    fn vp8x(flags: u8, width: u32, height: u32) -> Vec<u8> {
        let mut data = vec![flags, 0, 0, 0];
        data.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
        data.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
        chunk(b"VP8X", &data)
    }

    #[test]
    fn a_webp_loses_its_exif_and_xmp() {
        let exif = chunk(b"EXIF", b"MM\0*GPSLatitude 35.6892");
        let xmp = chunk(b"XMP ", b"<x:xmpmeta>GPS</x:xmpmeta>");
        let original = riff(&[vp8x(0x08 | 0x04, 800, 600), vp8(800, 600), exif, xmp]);
        let checked = check(&original).expect("kept");
        assert_eq!((checked.kind, checked.width, checked.height), (Kind::Webp, 800, 600));
        assert!(!String::from_utf8_lossy(&checked.bytes).contains("GPS"));
        assert_eq!(checked.bytes, riff(&[vp8x(0, 800, 600), vp8(800, 600)]), "flags cleared, size rewritten");

        let simple = riff(&[vp8(320, 240)]);
        let mut trailing = simple.clone();
        trailing.extend_from_slice(b"<?php system($_GET['c']); ?>");
        assert_eq!(check(&trailing).expect("kept").bytes, simple);

        let mut lossless = vec![0x2F];
        lossless.extend_from_slice(&((99u32) | (49 << 14)).to_le_bytes());
        assert_eq!(check(&riff(&[chunk(b"VP8L", &lossless)])).map(|c| (c.width, c.height)), Ok((100, 50)));
    }

    #[test]
    fn a_webp_that_is_animated_huge_or_broken_is_refused() {
        assert_eq!(check(&riff(&[vp8x(0x02, 100, 100), chunk(b"ANIM", &[0; 6])])), Err(PhotoError::Animated));
        assert_eq!(
            check(&riff(&[vp8x(0, 16_000, 16_000), vp8(100, 100)])),
            Err(PhotoError::TooLarge { width: 16_000, height: 16_000 })
        );
        let whole = riff(&[vp8(320, 240)]);
        assert_eq!(check(&whole[..whole.len() - 4]), Err(PhotoError::Malformed));
        assert_eq!(check(&riff(&[chunk(b"ICCP", b"profile")])), Err(PhotoError::Malformed), "no picture in it");
    }
}
