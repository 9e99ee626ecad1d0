//! The console's pages: Leptos views rendered to HTML on the server. No WASM and no script: every
//! action is a form that posts and is answered with a redirect, so the console works with
//! JavaScript off. Persian first (right to left, Persian digits, Solar Hijri dates), English
//! second.

use leptos::prelude::*;
use shared::{Lang, Status, digits::to_persian_digits};
use time::OffsetDateTime;

use super::calendar;
use crate::store::{AuditRecord, ComplaintRecord, MeterRecord, Session, StoredDeclaration};
use shared::wire::ComplaintKind;

/// Picks the Persian or the English text.
pub fn tr(lang: Lang, fa: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Fa => fa,
        Lang::En => en,
    }
}

/// A number or code as the language writes it.
pub fn digits(lang: Lang, text: impl ToString) -> String {
    match lang {
        Lang::Fa => to_persian_digits(&text.to_string()),
        Lang::En => text.to_string(),
    }
}

/// A number with a decimal point, as the language writes it (Persian uses `٫`).
fn decimal(lang: Lang, value: f64) -> String {
    let text = format!("{value:.1}");
    match lang {
        Lang::Fa => to_persian_digits(&text).replace('.', "٫"),
        Lang::En => text,
    }
}

/// The channel a declaration came through, in words.
fn channel_name(lang: Lang, channel: &str) -> &'static str {
    match channel {
        "app" => tr(lang, "برنامهٔ مشترک", "subscriber's app"),
        "sms" => tr(lang, "پیامک", "SMS"),
        "ivr" => tr(lang, "تلفن گویا", "phone (IVR)"),
        "office" => tr(lang, "دفتر پیشخوان", "counter office"),
        _ => tr(lang, "نامشخص", "unknown"),
    }
}

/// A moment in Iran's time: Solar Hijri date and time in Persian; in English the same date with
/// the Gregorian one beside it.
pub fn when(lang: Lang, at: OffsetDateTime) -> String {
    let local = at.to_offset(shared::wire::SERVER_OFFSET);
    let (y, m, d) = calendar::to_solar_hijri(local.date());
    let time = format!("{:02}:{:02}", local.hour(), local.minute());
    match lang {
        Lang::Fa => to_persian_digits(&format!("{y}/{m:02}/{d:02} {time}")),
        Lang::En => format!("{y}/{m:02}/{d:02} ({}) {time}", local.date()),
    }
}

/// Everything the frame of a page needs.
pub struct Frame<'a> {
    pub lang: Lang,
    pub title: &'a str,
    /// The signed-in staff member, for the menu and the sign-out form.
    pub session: Option<&'a Session>,
}

/// A whole HTML document around `body`.
pub fn document(frame: &Frame<'_>, body: impl IntoView + 'static) -> String {
    let lang = frame.lang;
    let (code, dir) = match lang {
        Lang::Fa => ("fa", "rtl"),
        Lang::En => ("en", "ltr"),
    };
    let title = format!("{} · {}", frame.title, tr(lang, "کنتور — میز کار", "Kontor console"));
    let nav = frame.session.map(|s| nav(lang, s));
    let other = match lang {
        Lang::Fa => view! { <a href="/office/lang/en" hreflang="en" lang="en">"English"</a> },
        Lang::En => view! { <a href="/office/lang/fa" hreflang="fa" lang="fa">"فارسی"</a> },
    };
    let html = Owner::new().with(|| {
        view! {
            <html lang=code dir=dir>
                <head>
                    <meta charset="utf-8" />
                    <meta name="viewport" content="width=device-width, initial-scale=1" />
                    <title>{title}</title>
                    <link rel="stylesheet" href="/office/console.css" />
                </head>
                <body>
                    <header>
                        <strong>{tr(lang, "کنتور", "Kontor")}</strong>
                        {nav}
                        <span class="lang">{other}</span>
                    </header>
                    <main>
                        <h1>{frame.title.to_owned()}</h1>
                        {body}
                    </main>
                </body>
            </html>
        }
        .to_html()
    });
    format!("<!DOCTYPE html>{html}")
}

fn nav(lang: Lang, session: &Session) -> impl IntoView + use<> {
    let role = session.role;
    let who = format!("{} ({})", session.username, session.office);
    let csrf = session.csrf.clone();
    view! {
        <nav>
            <a href="/office/">{tr(lang, "خانه", "Home")}</a>
            {role.declares().then(|| view! { <a href="/office/declare">{tr(lang, "ثبت رقم", "Declare")}</a> })}
            {role.reviews().then(|| view! { <a href="/office/review">{tr(lang, "بررسی", "Review")}</a> })}
            <a href="/office/complaints">{tr(lang, "شکایت‌ها", "Complaints")}</a>
            {role.audits().then(|| view! { <a href="/office/audit">{tr(lang, "گزارش رویدادها", "Audit log")}</a> })}
            {role.audits().then(|| view! { <a href="/office/replies">{tr(lang, "پیامک‌های پاسخ", "SMS replies")}</a> })}
            <span class="who"><bdi>{who}</bdi></span>
            <form method="post" action="/office/logout" class="inline">
                <input type="hidden" name="csrf" value=csrf />
                <button type="submit">{tr(lang, "خروج", "Sign out")}</button>
            </form>
        </nav>
    }
}

/// The sign-in form.
pub fn login(lang: Lang, csrf: &str, username: &str, error: Option<&'static str>) -> impl IntoView + use<> {
    let (csrf, username) = (csrf.to_owned(), username.to_owned());
    view! {
        {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <form method="post" action="/office/login" class="card">
            <input type="hidden" name="csrf" value=csrf />
            <label>
                {tr(lang, "نام کاربری", "Username")}
                <input name="username" value=username required autocomplete="username" dir="ltr" />
            </label>
            <label>
                {tr(lang, "گذرواژه", "Password")}
                <input name="password" type="password" required autocomplete="current-password" dir="ltr" />
            </label>
            <button type="submit">{tr(lang, "ورود", "Sign in")}</button>
        </form>
    }
}

/// A short message page: an error or a refusal.
pub fn message(text: &'static str, back: Option<(&'static str, &'static str)>) -> impl IntoView + use<> {
    view! {
        <p class="error" role="alert">{text}</p>
        {back.map(|(href, label)| view! { <p><a href=href>{label}</a></p> })}
    }
}

/// What the declare form was sent with, to show it again beside an error.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DeclareForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub subscription: String,
    #[serde(default)]
    pub meter_serial: String,
    #[serde(default)]
    pub reading: String,
    /// The Solar Hijri date the meter was read, `YYYY/MM/DD` in any digits.
    #[serde(default)]
    pub date: String,
    /// `HH:MM` in any digits.
    #[serde(default)]
    pub time: String,
}

/// The form an operator fills in for the citizen in front of them.
pub fn declare(lang: Lang, csrf: &str, form: &DeclareForm, error: Option<String>) -> impl IntoView + use<> {
    let f = form.clone();
    let csrf = csrf.to_owned();
    view! {
        {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <form method="post" action="/office/declare" class="card">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=f.id />
            <label>
                {tr(lang, "شماره اشتراک", "Subscription number")}
                <input name="subscription" value=f.subscription required inputmode="numeric" dir="ltr" autocomplete="off" />
            </label>
            <label>
                {tr(lang, "شماره سریال کنتور", "Meter serial number")}
                <input name="meter_serial" value=f.meter_serial required dir="ltr" autocomplete="off" />
            </label>
            <label>
                {tr(lang, "رقم کنتور (ارقام سیاه)", "Reading (the black digits)")}
                <input name="reading" value=f.reading required inputmode="numeric" dir="ltr" autocomplete="off" />
            </label>
            <div class="row">
                <label>
                    {tr(lang, "تاریخ خواندن (سال/ماه/روز)", "Date read (Solar Hijri, Y/M/D)")}
                    <input name="date" value=f.date required inputmode="numeric" dir="ltr" />
                </label>
                <label>
                    {tr(lang, "ساعت", "Time")}
                    <input name="time" value=f.time required inputmode="numeric" dir="ltr" />
                </label>
            </div>
            <button type="submit">{tr(lang, "ثبت", "Declare")}</button>
        </form>
    }
}

fn status_text(lang: Lang, d: &StoredDeclaration) -> &'static str {
    if d.void.is_some() {
        return tr(lang, "باطل شد", "voided");
    }
    if d.status == Status::NeedsReview && d.review.is_none() && d.duplicate_of.is_some() {
        return tr(lang, "تکرار رقمی در انتظار بررسی", "repeat of a reading waiting for review");
    }
    match (&d.review, d.status) {
        (Some(r), _) if r.approved => tr(lang, "پس از بررسی پذیرفته شد", "approved on review"),
        (Some(_), _) => tr(lang, "پس از بررسی رد شد", "rejected on review"),
        (None, Status::Accepted) => tr(lang, "پذیرفته شد", "accepted"),
        (None, Status::NeedsReview) => tr(lang, "در انتظار بررسی", "waiting for review"),
        (None, Status::Rejected) => tr(lang, "رد شد", "rejected"),
    }
}

fn status_class(d: &StoredDeclaration) -> &'static str {
    if d.void.is_some() {
        return "rejected";
    }
    match (&d.review, d.status) {
        (Some(r), _) if r.approved => "accepted",
        (Some(_), _) | (None, Status::Rejected) => "rejected",
        (None, Status::Accepted) => "accepted",
        (None, Status::NeedsReview) => "review",
    }
}

/// One declaration's outcome, with its tracking code to print or read out.
pub fn outcome(lang: Lang, d: &StoredDeclaration) -> impl IntoView + use<> {
    let tracking = d.tracking_code().map(|c| digits(lang, c.as_str()));
    let review_reason = d.review.as_ref().and_then(|r| r.reason.clone());
    let extra = view! {
        {tracking.map(|code| view! {
            <p class="tracking">
                {tr(lang, "کد رهگیری", "Tracking code")}
                <output><bdi>{code}</bdi></output>
            </p>
        })}
        {review_reason.map(|r| view! { <p>{tr(lang, "دلیل: ", "Reason: ")}{r}</p> })}
    };
    view! {
        {outcome_summary(lang, d, extra)}
        <p class="print-hint">{tr(lang, "برای چاپ، از منوی مرورگر «چاپ» را بزنید.", "To print it, use the browser's Print.")}</p>
        <p><a href="/office/declare">{tr(lang, "ثبت رقم دیگر", "Declare another")}</a></p>
    }
}

/// A table with these column headings and rows, scrolling sideways on a narrow screen, with a
/// word when it is empty.
fn table<R: IntoView + 'static>(lang: Lang, headings: Vec<&'static str>, rows: Vec<R>) -> impl IntoView + use<R> {
    let empty = rows.is_empty();
    let headings: Vec<_> = headings.into_iter().map(|h| view! { <th>{h}</th> }).collect();
    view! {
        <div class="scroll"><table>
            <thead><tr>{headings}</tr></thead>
            <tbody>{rows}</tbody>
        </table></div>
        {empty.then(|| view! { <p class="empty">{tr(lang, "چیزی نیست.", "Nothing here.")}</p> })}
    }
}

/// A table of declarations.
pub fn declarations(lang: Lang, rows: &[StoredDeclaration], link_review: bool) -> impl IntoView + use<> {
    let rows: Vec<_> = rows
        .iter()
        .map(|d| {
            let href = if link_review {
                format!("/office/review/{}", d.seq)
            } else {
                format!("/office/declarations/{}", d.id)
            };
            let tracking = d.tracking_code().map(|c| digits(lang, c.as_str())).unwrap_or_default();
            let reason = d.code.map(|c| c.message(lang)).unwrap_or_default();
            view! {
                <tr class=status_class(d)>
                    <td><a href=href><bdi>{digits(lang, &d.subscription)}</bdi></a></td>
                    <td>{d.reading.map(|r| digits(lang, r))}</td>
                    <td>{when(lang, d.read_at)}</td>
                    <td>{status_text(lang, d)}</td>
                    <td><bdi>{tracking}</bdi></td>
                    <td>{reason}</td>
                </tr>
            }
        })
        .collect();
    let headings = vec![
        tr(lang, "اشتراک", "Subscription"),
        tr(lang, "رقم", "Reading"),
        tr(lang, "زمان خواندن", "Read at"),
        tr(lang, "وضعیت", "Status"),
        tr(lang, "کد رهگیری", "Tracking code"),
        tr(lang, "توضیح", "Note"),
    ];
    table(lang, headings, rows)
}

/// A reading after the one decided on, whose consumption a decision changes.
#[derive(Debug, Clone, PartialEq)]
pub struct NextChange {
    pub reading: u64,
    pub read_at: OffsetDateTime,
    pub was: Option<u64>,
    pub becomes: Option<u64>,
}

/// What a staff decision would do along the meter's chain and to the bill, shown beside the
/// buttons before anyone presses one.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Approving counts `consumption` m³, measured from the reading `from` (none before it:
    /// nothing to measure from), and re-measures `next`.
    Approve { consumption: Option<u64>, from: Option<(u64, OffsetDateTime)>, next: Option<NextChange> },
    /// Approving adds nothing: the same reading counts already, under this tracking code.
    Repeat { of: String },
    /// Approving would make the chain go down against the reading of `at`: it is refused.
    Conflict { reading: u64, at: OffsetDateTime, after: bool },
    /// Voiding takes the reading out of the chain and the bill and re-measures `next`.
    Void { next: Option<NextChange> },
    /// Nothing to decide.
    Nothing,
}

/// The sentence that says how the next reading's consumption changes.
fn next_change(lang: Lang, next: &NextChange) -> String {
    let m3 = |v: Option<u64>| {
        v.map_or_else(
            || tr(lang, "بدون مصرف", "no consumption").to_owned(),
            |v| format!("{} {}", digits(lang, v), tr(lang, "مترمکعب", "m³")),
        )
    };
    match lang {
        Lang::Fa => format!(
            "رقم بعدی ({}، {}) به‌جای {} با {} در قبض می‌آید.",
            digits(lang, next.reading),
            when(lang, next.read_at),
            m3(next.was),
            m3(next.becomes)
        ),
        Lang::En => format!(
            "The next reading ({}, {}) is billed at {} instead of {}.",
            next.reading,
            when(lang, next.read_at),
            m3(next.becomes),
            m3(next.was)
        ),
    }
}

/// What `effect` says, as sentences.
fn effect_text(lang: Lang, effect: &Effect) -> Vec<String> {
    let m3 = |v: u64| format!("{} {}", digits(lang, v), tr(lang, "مترمکعب", "m³"));
    match effect {
        Effect::Approve { consumption, from, next } => {
            let mut lines = vec![match (consumption, from) {
                (Some(c), Some((r, at))) => match lang {
                    Lang::Fa => {
                        format!("با تأیید، {} از رقم {} ({}) در قبض می‌آید.", m3(*c), digits(lang, r), when(lang, *at))
                    }
                    Lang::En => format!("Approving bills {} since the reading {} of {}.", m3(*c), r, when(lang, *at)),
                },
                _ => tr(
                    lang,
                    "با تأیید، این رقم شمرده می‌شود؛ رقمی پیش از آن نیست که مصرف از آن سنجیده شود.",
                    "Approving counts this reading; there is no earlier reading to measure consumption from.",
                )
                .to_owned(),
            }];
            lines.extend(next.as_ref().map(|n| next_change(lang, n)));
            lines.push(
                tr(
                    lang,
                    "با رد، چیزی در قبض نمی‌آید و دلیل به مشترک گفته می‌شود.",
                    "Rejecting bills nothing; the subscriber is told the reason.",
                )
                .to_owned(),
            );
            lines
        }
        Effect::Repeat { of } => vec![match lang {
            Lang::Fa => {
                format!("همین رقم با کد رهگیری {} شمرده شده است: تأیید چیزی به قبض نمی‌افزاید.", digits(lang, of))
            }
            Lang::En => {
                format!("The same reading counts already, tracking code {of}: approving adds nothing to the bill.")
            }
        }],
        Effect::Conflict { reading, at, after } => vec![match (lang, after) {
            (Lang::Fa, true) => format!(
                "تأیید ممکن نیست: رقم بعدی ({}، {}) از این کمتر است و کنتور به عقب نمی‌رود. اگر آن رقم اشتباه است اول آن را باطل کنید؛ وگرنه این را رد کنید.",
                digits(lang, reading),
                when(lang, *at)
            ),
            (Lang::Fa, false) => format!(
                "تأیید ممکن نیست: این رقم از رقم پیشین ({}، {}) کمتر است و کنتور دور نزده است. اگر آن رقم اشتباه است اول آن را باطل کنید؛ وگرنه این را رد کنید.",
                digits(lang, reading),
                when(lang, *at)
            ),
            (Lang::En, true) => format!(
                "This cannot be approved: the next reading ({reading}, {}) is lower, and a meter does not go back. If that reading is wrong, void it first; otherwise reject this one.",
                when(lang, *at)
            ),
            (Lang::En, false) => format!(
                "This cannot be approved: it is lower than the reading before it ({reading}, {}) and the meter has not wrapped. If that reading is wrong, void it first; otherwise reject this one.",
                when(lang, *at)
            ),
        }],
        Effect::Void { next } => {
            let mut lines = vec![
                tr(
                    lang,
                    "با باطل کردن، این رقم دیگر شمرده نمی‌شود و اصلاحیه‌ای برای صورتحساب فرستاده می‌شود.",
                    "Voiding stops this reading counting, and the billing feed gets a correction.",
                )
                .to_owned(),
            ];
            lines.extend(next.as_ref().map(|n| next_change(lang, n)));
            lines
        }
        Effect::Nothing => Vec::new(),
    }
}

/// One declaration, what a decision would do, the forms, then its meter's recent readings: approve
/// and reject for a held one, void for one that counts. Approve and reject are separate forms, so
/// that Enter in the reason field can only reject, with the reason.
pub fn review(
    lang: Lang,
    csrf: &str,
    d: &StoredDeclaration,
    meter: Option<&MeterRecord>,
    chain: &[StoredDeclaration],
    effect: &Effect,
    photo: Option<(u32, u32)>,
) -> impl IntoView + use<> {
    let csrf = csrf.to_owned();
    let action = format!("/office/review/{}", d.seq);
    let figure = photo.map(|(width, height)| photo_figure(lang, d.seq, width, height));
    let billed = meter.and_then(|m| m.last).map(|p| (digits(lang, p.reading), when(lang, p.read_at)));
    let average = meter.and_then(|m| m.avg_daily_m3).map(|a| decimal(lang, a));
    let channel = channel_name(lang, &d.channel);
    let sender = d.sender.clone();
    let pending = d.pending_review();
    let approvable = !matches!(effect, Effect::Conflict { .. });
    let voidable = d.counts && d.void.is_none();
    let lines: Vec<_> = effect_text(lang, effect).into_iter().map(|line| view! { <li>{line}</li> }).collect();
    let has_lines = !lines.is_empty();
    let void_reason = d.void.as_ref().map(|v| (v.reason.clone(), v.by.clone(), when(lang, v.at)));
    let repeat_of = d.repeat_of.and_then(shared::TrackingCode::from_sequence).map(|code| digits(lang, code.as_str()));
    view! {
        {outcome_summary(lang, d, ())}
        {figure}
        <dl class="card">
            <dt>{tr(lang, "کانال", "Channel")}</dt>
            <dd>{channel}</dd>
            {sender.map(|s| view! { <dt>{tr(lang, "فرستنده", "Sender")}</dt><dd><bdi>{s}</bdi></dd> })}
            {billed.map(|(r, at)| view! {
                <dt>{tr(lang, "آخرین رقم معتبر", "Latest counting reading")}</dt>
                <dd>{r}" — "{at}</dd>
            })}
            {average.map(|a| view! {
                <dt>{tr(lang, "میانگین مصرف روزانه", "Average daily use")}</dt>
                <dd>{a}" "{tr(lang, "مترمکعب", "m³")}</dd>
            })}
            {repeat_of.map(|code| view! {
                <dt>{tr(lang, "تکرارِ رقمِ", "A repeat of")}</dt>
                <dd><bdi>{code}</bdi></dd>
            })}
            {void_reason.map(|(reason, by, at)| view! {
                <dt>{tr(lang, "باطل شده", "Voided")}</dt>
                <dd>{reason}" — "<bdi>{by}</bdi>" — "{at}</dd>
            })}
        </dl>
        {has_lines.then(|| view! {
            <section class="card effect" aria-labelledby="effect">
                <h2 id="effect">{tr(lang, "اثر تصمیم", "What a decision does")}</h2>
                <ul>{lines}</ul>
            </section>
        })}
        {(pending && approvable).then(|| view! {
            <form method="post" action=action.clone() class="card decide">
                <input type="hidden" name="csrf" value=csrf.clone() />
                <button type="submit" name="decision" value="approve">{tr(lang, "تأیید", "Approve")}</button>
            </form>
        })}
        {pending.then(|| reason_form(&action, &csrf, "reject",
            tr(lang, "دلیل رد", "Reason for rejecting"), tr(lang, "رد", "Reject")))}
        {voidable.then(|| reason_form(&action, &csrf, "void",
            tr(lang, "دلیل باطل کردن", "Reason for voiding"), tr(lang, "باطل کردن رقم", "Void this reading")))}
        <h2>{tr(lang, "رقم‌های این کنتور", "This meter's readings")}</h2>
        {declarations(lang, chain, true)}
    }
}

/// A decision that needs a reason (reject, void): a form of its own, whose only button is that
/// decision, so that Enter in the reason field can only take it.
fn reason_form(
    action: &str,
    csrf: &str,
    decision: &'static str,
    label: &'static str,
    button: &'static str,
) -> impl IntoView + use<> {
    let (action, csrf) = (action.to_owned(), csrf.to_owned());
    view! {
        <form method="post" action=action class="card decide">
            <input type="hidden" name="csrf" value=csrf />
            <label>
                {label}
                <input name="reason" maxlength="500" required />
            </label>
            <button type="submit" name="decision" value=decision>{button}</button>
        </form>
    }
}

/// A declaration's status, reason and numbers; `extra` goes under the status.
fn outcome_summary<V: IntoView + 'static>(lang: Lang, d: &StoredDeclaration, extra: V) -> impl IntoView + use<V> {
    let reason = d.code.map(|c| c.message(lang));
    let consumption = d.consumption_m3.map(|m3| format!("{} {}", digits(lang, m3), tr(lang, "مترمکعب", "m³")));
    view! {
        <section class=format!("card outcome {}", status_class(d))>
            <p class="status" role="status">{status_text(lang, d)}</p>
            {extra}
            {reason.map(|r| view! { <p>{r}</p> })}
            <dl>
                <dt>{tr(lang, "شماره اشتراک", "Subscription")}</dt>
                <dd><bdi>{digits(lang, &d.subscription)}</bdi></dd>
                <dt>{tr(lang, "رقم کنتور", "Reading")}</dt>
                <dd>{d.reading.map(|r| digits(lang, r))}</dd>
                <dt>{tr(lang, "زمان خواندن", "Read at")}</dt>
                <dd>{when(lang, d.read_at)}</dd>
                {consumption.map(|c| view! { <dt>{tr(lang, "مصرف", "Consumption")}</dt><dd>{c}</dd> })}
            </dl>
        </section>
    }
}

/// What the complaint form was sent with, to show it again beside an error.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ComplaintForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub subscription: String,
    /// `dispute` or `service`.
    #[serde(default)]
    pub kind: String,
    /// The tracking code it is about, if any.
    #[serde(default)]
    pub about: String,
    #[serde(default)]
    pub text: String,
}

/// The form an office fills in for a citizen's complaint.
pub fn complaint_form(
    lang: Lang,
    csrf: &str,
    form: &ComplaintForm,
    error: Option<&'static str>,
) -> impl IntoView + use<> {
    let f = form.clone();
    let csrf = csrf.to_owned();
    let service = f.kind == "service";
    view! {
        {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <form method="post" action="/office/complaints/new" class="card">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=f.id />
            <label>
                {tr(lang, "شماره اشتراک", "Subscription number")}
                <input name="subscription" value=f.subscription required inputmode="numeric" dir="ltr" autocomplete="off" />
            </label>
            <label>
                {tr(lang, "موضوع", "About")}
                <select name="kind">
                    <option value="dispute" selected=!service>{tr(lang, "اعتراض به رقم یا قبض", "Disputing a reading or a bill")}</option>
                    <option value="service" selected=service>{tr(lang, "شکایت از خدمات", "The service")}</option>
                </select>
            </label>
            <label>
                {tr(lang, "کد رهگیری رقم مورد اعتراض (اختیاری)", "Tracking code of the disputed reading (optional)")}
                <input name="about" value=f.about inputmode="numeric" dir="ltr" autocomplete="off" />
            </label>
            <label>
                {tr(lang, "شرح", "What happened")}
                <textarea name="text" required maxlength="1000" rows="5">{f.text}</textarea>
            </label>
            <button type="submit">{tr(lang, "ثبت شکایت", "File the complaint")}</button>
        </form>
    }
}

fn kind_name(lang: Lang, kind: ComplaintKind) -> &'static str {
    match kind {
        ComplaintKind::Dispute => tr(lang, "اعتراض", "dispute"),
        ComplaintKind::Service => tr(lang, "خدمات", "service"),
    }
}

/// A table of complaints.
pub fn complaints(lang: Lang, rows: &[ComplaintRecord]) -> impl IntoView + use<> {
    let rows: Vec<_> = rows
        .iter()
        .map(|c| {
            let number = c.number().map(|n| digits(lang, n.as_str())).unwrap_or_default();
            let excerpt: String = c.text.chars().take(80).collect();
            let state = if c.answer.is_some() {
                tr(lang, "پاسخ داده شد", "answered")
            } else {
                tr(lang, "باز", "open")
            };
            view! {
                <tr>
                    <td><a href=format!("/office/complaints/{}", c.seq)><bdi>{number}</bdi></a></td>
                    <td><bdi>{digits(lang, &c.subscription)}</bdi></td>
                    <td>{kind_name(lang, c.kind)}</td>
                    <td>{when(lang, c.received_at)}</td>
                    <td>{state}</td>
                    <td>{excerpt}</td>
                </tr>
            }
        })
        .collect();
    let headings = vec![
        tr(lang, "شماره شکایت", "Complaint number"),
        tr(lang, "اشتراک", "Subscription"),
        tr(lang, "موضوع", "About"),
        tr(lang, "دریافت", "Received"),
        tr(lang, "وضعیت", "State"),
        tr(lang, "شرح", "Text"),
    ];
    table(lang, headings, rows)
}

/// One complaint, the declaration it is about, and the answer (or the form to answer it).
pub fn complaint(
    lang: Lang,
    csrf: &str,
    c: &ComplaintRecord,
    about: Option<&StoredDeclaration>,
    photo: Option<(u64, u32, u32)>,
    may_answer: bool,
) -> impl IntoView + use<> {
    let number = c.number().map(|n| digits(lang, n.as_str())).unwrap_or_default();
    let action = format!("/office/complaints/{}", c.seq);
    let csrf = csrf.to_owned();
    let text = c.text.clone();
    let answer = c.answer.clone().map(|(answer, by, at)| (answer, by, when(lang, at)));
    let open = answer.is_none() && may_answer;
    let about = about.map(|d| outcome_summary(lang, d, ()));
    view! {
        <section class="card">
            <p class="tracking">
                {tr(lang, "شماره شکایت", "Complaint number")}
                <output><bdi>{number}</bdi></output>
            </p>
            <dl>
                <dt>{tr(lang, "شماره اشتراک", "Subscription")}</dt>
                <dd><bdi>{digits(lang, &c.subscription)}</bdi></dd>
                <dt>{tr(lang, "موضوع", "About")}</dt>
                <dd>{kind_name(lang, c.kind)}</dd>
                <dt>{tr(lang, "کانال", "Channel")}</dt>
                <dd>{channel_name(lang, &c.channel)}</dd>
                <dt>{tr(lang, "دریافت", "Received")}</dt>
                <dd>{when(lang, c.received_at)}</dd>
            </dl>
            <p class="text">{text}</p>
        </section>
        {about.map(|summary| view! { <h2>{tr(lang, "رقم مورد اعتراض", "The disputed reading")}</h2>{summary} })}
        {photo.map(|(seq, width, height)| photo_figure(lang, seq, width, height))}
        {answer.map(|(answer, by, at)| view! {
            <section class="card outcome accepted">
                <p class="status">{tr(lang, "پاسخ", "Answer")}</p>
                <p class="text">{answer}</p>
                <p><bdi>{by}</bdi>" — "{at}</p>
            </section>
        })}
        {open.then(|| view! {
            <form method="post" action=action.clone() class="card">
                <input type="hidden" name="csrf" value=csrf.clone() />
                <label>
                    {tr(lang, "پاسخ به مشترک", "Answer to the subscriber")}
                    <textarea name="answer" required maxlength="2000" rows="5"></textarea>
                </label>
                <button type="submit">{tr(lang, "ثبت پاسخ", "Send the answer")}</button>
            </form>
        })}
    }
}

/// A declaration's meter photo as the subscriber sent it (without its metadata); loading it is
/// recorded in the audit log.
fn photo_figure(lang: Lang, seq: u64, width: u32, height: u32) -> impl IntoView + use<> {
    view! {
        <figure class="card photo">
            <img src=format!("/office/photos/{seq}") width=width height=height
                alt=tr(lang, "عکس کنتور که مشترک فرستاده است", "The meter photo the subscriber sent") />
            <figcaption>{tr(lang, "عکس کنتور از مشترک", "Meter photo from the subscriber")}</figcaption>
        </figure>
    }
}

/// The audit log, newest first, with a link to older entries.
pub fn audit(lang: Lang, rows: &[AuditRecord], older: Option<u64>) -> impl IntoView + use<> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            view! {
                <tr>
                    <td>{when(lang, r.at)}</td>
                    <td><bdi>{r.username.clone()}</bdi></td>
                    <td>{r.action.clone()}</td>
                    <td><bdi>{r.detail.clone()}</bdi></td>
                </tr>
            }
        })
        .collect();
    let headings = vec![
        tr(lang, "زمان", "When"),
        tr(lang, "کاربر", "Who"),
        tr(lang, "کار", "Action"),
        tr(lang, "جزئیات", "Details"),
    ];
    view! {
        {table(lang, headings, rows)}
        {older.map(|seq| view! {
            <p><a href=format!("/office/audit?before={seq}")>{tr(lang, "قدیمی‌تر", "Older")}</a></p>
        })}
    }
}

/// The SMS replies: how many wait and were sent, and those the gateway never took, each with
/// its last error and a button to send it again.
pub fn replies(
    lang: Lang,
    csrf: &str,
    counts: crate::store::ReplyCounts,
    inbox: crate::store::InboxCounts,
    failed: &[crate::store::ReplyRecord],
) -> impl IntoView + use<> {
    let rows: Vec<_> = failed
        .iter()
        .map(|r| {
            let at = r
                .failed_at_ms
                .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
            let action = format!("/office/replies/{}", r.id);
            let csrf = csrf.to_owned();
            view! {
                <tr>
                    <td>{at.map(|at| when(lang, at))}</td>
                    <td><bdi dir="ltr">{r.recipient.clone()}</bdi></td>
                    <td><bdi>{r.body.clone()}</bdi></td>
                    <td>{digits(lang, r.attempts)}</td>
                    <td><bdi dir="ltr">{r.last_error.clone()}</bdi></td>
                    <td>
                        <form method="post" action=action class="inline">
                            <input type="hidden" name="csrf" value=csrf />
                            <button type="submit">{tr(lang, "ارسال دوباره", "Send again")}</button>
                        </form>
                    </td>
                </tr>
            }
        })
        .collect();
    let headings = vec![
        tr(lang, "زمان", "When"),
        tr(lang, "گیرنده", "To"),
        tr(lang, "متن", "Text"),
        tr(lang, "تلاش‌ها", "Attempts"),
        tr(lang, "آخرین خطا", "Last error"),
        "",
    ];
    let number = |n: u64| digits(lang, n);
    view! {
        <dl class="card">
            <dt>{tr(lang, "در صف ارسال", "Waiting")}</dt><dd>{number(counts.waiting)}</dd>
            <dt>{tr(lang, "فرستاده شده", "Sent")}</dt><dd>{number(counts.sent)}</dd>
            <dt>{tr(lang, "نرسیده", "Failed for good")}</dt><dd>{number(counts.failed)}</dd>
            <dt>{tr(lang, "دریافتی از صندوق درگاه، در انتظار بررسی", "Fetched from the gateway, waiting")}</dt>
            <dd>{number(inbox.waiting)}</dd>
            <dt>{tr(lang, "دریافتی کنارگذاشته", "Fetched, set aside")}</dt><dd>{number(inbox.failed)}</dd>
        </dl>
        <h2>{tr(lang, "پیامک‌هایی که درگاه نپذیرفت", "Replies the gateway never took")}</h2>
        {table(lang, headings, rows)}
    }
}

/// The console's one style sheet: no fonts to fetch, right-to-left aware through logical
/// properties.
pub const CSS: &str = r#"
:root { color-scheme: light; --accent: #0b5cad; --ok: #1b7a3a; --warn: #9a6200; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.6 Vazirmatn, Tahoma, system-ui, sans-serif; background: #f6f7f9; color: #1d232b; }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; padding: .6rem 1rem; background: #fff;
  border-block-end: 1px solid #dde1e6; }
nav { display: flex; flex-wrap: wrap; gap: .8rem; align-items: center; flex: 1; }
nav .who { margin-inline-start: auto; color: #56606b; }
.lang { margin-inline-start: auto; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.4rem; }
.photo img { display: block; max-width: 100%; height: auto; border-radius: .25rem; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: .5rem; padding: 1rem; margin-block: 1rem; }
form.card { display: grid; gap: .8rem; max-width: 32rem; }
form.inline { display: inline; }
form.decide { max-width: none; grid-template-columns: auto 1fr auto; align-items: end; }
label { display: grid; gap: .2rem; }
.row { display: grid; grid-template-columns: 2fr 1fr; gap: .8rem; }
.text { white-space: pre-wrap; }
input, select, textarea { font: inherit; padding: .45rem .6rem; border: 1px solid #aab2bc; border-radius: .35rem; }
button { font: inherit; padding: .45rem 1rem; border: 0; border-radius: .35rem; background: var(--accent);
  color: #fff; cursor: pointer; }
button[value=reject], nav button { background: #56606b; }
.error { color: var(--bad); font-weight: bold; }
.outcome.accepted { border-inline-start: .4rem solid var(--ok); }
.outcome.review { border-inline-start: .4rem solid var(--warn); }
.outcome.rejected { border-inline-start: .4rem solid var(--bad); }
.status { font-size: 1.2rem; font-weight: bold; margin: 0; }
.tracking output { display: block; font-size: 2rem; letter-spacing: .1em; font-weight: bold; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dd { margin: 0; }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; background: #fff; }
th, td { text-align: start; padding: .4rem .5rem; border-block-end: 1px solid #e5e8ec; }
tr.review td:first-child { border-inline-start: .3rem solid var(--warn); }
.empty { color: #56606b; }
@media print { header, form, .print-hint, a { display: none; } body { background: #fff; } }
"#;
