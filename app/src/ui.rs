//! The screens: my meters, declare, my declarations, and complaints. They wrap plain types in signals and
//! call the rules, the device store and the sync loop; they decide nothing themselves.

use std::time::Duration;

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::rules::{self, Candidate};
use shared::wire::{ComplaintCode, ComplaintKind, complaint_text};
use shared::{Lang, MeterSerial, Reading, Status, SubscriptionNumber, TrackingCode};

use crate::api::ApiError;
use crate::i18n::{Text, clock_warning, datetime, number, t};
use crate::model::{Complaint, Declaration, Meter, State};
use crate::outbox;
use crate::sync::{self, AppState, now};

#[component]
pub fn App() -> impl IntoView {
    let state = AppState {
        lang: RwSignal::new(sync::saved_lang()),
        meters: RwSignal::new(Vec::new()),
        declarations: RwSignal::new(Vec::new()),
        complaints: RwSignal::new(Vec::new()),
        syncing: RwSignal::new(false),
        last_sync: RwSignal::new(sync::saved_last_sync()),
        online: RwSignal::new(true),
        backoff: RwSignal::new(0),
        form_meter: RwSignal::new(String::new()),
        form_reading: RwSignal::new(String::new()),
        form_about: RwSignal::new(String::new()),
        form_complaint_meter: RwSignal::new(String::new()),
        persistent: RwSignal::new(None),
        clock: RwSignal::new(sync::saved_clock()),
    };
    provide_context(state);

    spawn_local(async move {
        if let Ok(meters) = outbox::meters().await {
            state.meters.set(meters);
        }
        if let Ok(mut declarations) = outbox::declarations().await {
            crate::model::newest_first(&mut declarations);
            state.declarations.set(declarations);
        }
        if let Ok(mut complaints) = outbox::complaints().await {
            crate::model::newest_first_complaints(&mut complaints);
            state.complaints.set(complaints);
        }
        // The device's meters and outbox are on screen: the app is usable from here, with or
        // without a network. The browser tests read this mark for the offline start-up time.
        request_animation_frame(|| {
            if let Some(performance) = window().performance() {
                let _ = performance.mark("kontor-interactive");
            }
        });
        sync::sync_once(state).await;
        state.persistent.set(Some(sync::persistent_storage().await));
    });
    // The network came back, or the app came to the front: try at once.
    let kick = move || spawn_local(sync::sync_once(state));
    let _ = window_event_listener(ev::online, move |_| kick());
    let _ = window_event_listener(ev::focus, move |_| kick());
    let _ = window_event_listener(ev::pageshow, move |_| kick());
    // The service worker's Background Sync, where the browser has it, wakes the page to send.
    let _ = window_event_listener_untyped("kontor-sync", move |_| kick());
    // And every few seconds, backing off while the server is away.
    // The wait gets up to a third more at random, so that phones which lost the server together
    // do not all come back in the same second.
    let ticks = StoredValue::new(0u32);
    let jitter = StoredValue::new(0.0f64);
    let _ = set_interval_with_handle(
        move || {
            ticks.update_value(|t| *t += 5);
            let wait = f64::from(state.backoff.get_untracked().max(15)) * (1.0 + jitter.get_value());
            if f64::from(ticks.get_value()) >= wait {
                ticks.set_value(0);
                jitter.set_value(js_sys::Math::random() / 3.0);
                kick();
            }
        },
        Duration::from_secs(5),
    );

    let lang = state.lang;
    // The page's language and direction follow the choice, from the first frame after a reload.
    Effect::new(move |_| {
        let current = lang.get();
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("lang", sync::lang_tag(current));
            let _ = root.set_attribute("dir", if current == Lang::Fa { "rtl" } else { "ltr" });
        }
    });
    let switch = move |_| {
        let next = if lang.get() == Lang::Fa { Lang::En } else { Lang::Fa };
        sync::save_lang(next);
        lang.set(next);
    };
    view! {
        <header>
            <h1>{move || t(lang.get(), Text::Title)}</h1>
            <button class="link" on:click=switch>{move || t(lang.get(), Text::Language)}</button>
        </header>
        <main>
            <SyncStatus/>
            <Meters/>
            <Declare/>
            <History/>
            <Complaints/>
        </main>
    }
}

#[component]
fn SyncStatus() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let unsent = move || {
        let declarations = state.declarations.get().iter().filter(|d| d.state == State::Waiting).count();
        declarations + state.complaints.get().iter().filter(|c| c.received.is_none()).count()
    };
    view! {
        <section class="status" aria-live="polite">
            <span>
                {move || t(lang.get(), Text::Unsent)} ": "
                <strong id="unsent">{move || number(lang.get(), &unsent().to_string())}</strong>
            </span>
            <span>
                {move || t(lang.get(), Text::LastSync)} ": "
                {move || state.last_sync.get().map_or_else(|| t(lang.get(), Text::Never).to_owned(), |at| datetime(lang.get(), at))}
            </span>
            {move || (!state.online.get()).then(|| view! { <span class="offline">{t(lang.get(), Text::Offline)}</span> })}
            {move || state.clock.get().filter(|c| c.worth_a_warning()).map(|c| view! {
                <p class="problem" id="clock">{clock_warning(lang.get(), c.phone_ahead_minutes())}</p>
            })}
            <button on:click=move |_| spawn_local(sync::sync_once(state)) disabled=move || state.syncing.get()>
                {move || t(lang.get(), Text::SendNow)}
            </button>
            <small id="storage">
                {move || state.persistent.get().map(|p| t(lang.get(), if p { Text::StoragePersistent } else { Text::StorageBestEffort }))}
            </small>
            {move || sync::ios_tab().then(|| view! { <small>{t(lang.get(), Text::InstallOnIos)}</small> })}
        </section>
    }
}

#[component]
fn Meters() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let subscription = RwSignal::new(String::new());
    let serial = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<&'static str>);
    let add = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let (Ok(sub), Ok(ser)) = (SubscriptionNumber::parse(&subscription.get()), MeterSerial::parse(&serial.get()))
        else {
            problem.set(Some(t(lang.get(), Text::WrongPair)));
            return;
        };
        problem.set(None);
        let meter =
            Meter { subscription: sub.to_string(), meter_serial: ser.to_string(), info: None, device_token: None };
        spawn_local(async move {
            let meter = match sync::verify_meter(state, meter.clone()).await {
                Ok(verified) => verified,
                Err(ApiError::Refused) => {
                    problem.set(Some(t(lang.get_untracked(), Text::WrongPair)));
                    return;
                }
                // Offline: kept, and verified at the first sync.
                Err(_) => meter,
            };
            if outbox::save_meter(&meter).await.is_ok() {
                state.meters.update(|ms| {
                    ms.retain(|m| m.subscription != meter.subscription);
                    ms.push(meter);
                });
                subscription.set(String::new());
                serial.set(String::new());
            }
        });
    };
    view! {
        <section>
            <h2>{move || t(lang.get(), Text::MyMeters)}</h2>
            <ul class="meters">
                {move || state.meters.get().into_iter().map(|m| {
                    let verified = m.info.is_some();
                    view! {
                        <li>
                            <bdi>{number(lang.get(), &m.subscription)}</bdi> " — " <bdi>{m.meter_serial.clone()}</bdi> " "
                            <small>{t(lang.get(), if verified { Text::Verified } else { Text::NotVerified })}</small>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <form on:submit=add>
                <label for="subscription">{move || t(lang.get(), Text::Subscription)}</label>
                <input id="subscription" name="subscription" inputmode="numeric" autocomplete="off"
                    prop:value=move || subscription.get() on:input=move |ev| subscription.set(event_target_value(&ev))/>
                <label for="meter_serial">{move || t(lang.get(), Text::MeterSerial)}</label>
                <input id="meter_serial" name="meter_serial" autocomplete="off" dir="ltr"
                    prop:value=move || serial.get() on:input=move |ev| serial.set(event_target_value(&ev))/>
                <p class="problem" role="alert">{move || problem.get()}</p>
                <button type="submit">{move || t(lang.get(), Text::AddMeter)}</button>
            </form>
        </section>
    }
}

#[component]
fn Declare() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let chosen = state.form_meter;
    let reading = state.form_reading;
    let warning = RwSignal::new(None::<String>);
    let confirm = RwSignal::new(false);
    let receipt = RwSignal::new(None::<String>);
    let meter = move || chosen_meter(state, chosen);
    let save = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        receipt.set(None);
        let Some(meter) = meter() else {
            warning.set(Some(t(lang.get(), Text::NoMeter).to_owned()));
            return;
        };
        let Ok(value) = Reading::parse(&reading.get()) else {
            warning.set(Some(t(lang.get(), Text::BadReading).to_owned()));
            return;
        };
        // The shared rules, against what the phone knows of the meter: warn before queueing.
        // Times are the server's as far as the phone knows it, as the server will judge them.
        let server_now = sync::clock(state).server_now(now());
        let candidate = Candidate { reading: value, read_at: server_now };
        let chain = meter.chain(&state.declarations.get_untracked());
        let decision = rules::reconcile(&meter.context(), &chain, &candidate, server_now);
        if let Some(code) = decision.code.filter(|_| decision.status != Status::Accepted)
            && !confirm.get()
        {
            warning.set(Some(code.message(lang.get()).to_owned()));
            confirm.set(true);
            return;
        }
        let declaration = Declaration::new(&meter, value, now(), sync::clock(state));
        spawn_local(async move {
            let shown = declaration.receipt();
            // Written to the device before the screen says "saved".
            match queue(state, declaration).await {
                Err(e) => warning.set(Some(e)),
                Ok(()) => {
                    receipt.set(Some(shown));
                    reading.set(String::new());
                    warning.set(None);
                    confirm.set(false);
                    sync::sync_once(state).await;
                }
            }
        });
    };
    view! {
        <section>
            <h2>{move || t(lang.get(), Text::Declare)}</h2>
            <form on:submit=save>
                <label for="meter">{move || t(lang.get(), Text::Meter)}</label>
                <MeterChoice chosen=chosen id="meter"/>
                <label for="reading">{move || t(lang.get(), Text::Reading)}</label>
                <input id="reading" name="reading" inputmode="numeric" autocomplete="off" dir="ltr"
                    aria-describedby="baseline"
                    prop:value=move || reading.get()
                    on:input=move |ev| { reading.set(event_target_value(&ev)); confirm.set(false); warning.set(None); }/>
                <small id="baseline">{move || baseline(lang.get(), meter())}</small>
                <p class="problem" role="alert">{move || warning.get()}</p>
                <button type="submit">
                    {move || t(lang.get(), if confirm.get() { Text::SaveAnyway } else { Text::Save })}
                </button>
            </form>
            {move || receipt.get().map(|r| view! {
                <p class="receipt" id="receipt">
                    {t(lang.get(), Text::Saved)} " " {t(lang.get(), Text::Receipt)} ": "
                    <bdi>{number(lang.get(), &r)}</bdi>
                </p>
            })}
        </section>
    }
}

/// The meter's latest counting reading and when it was read, as the server last told: what a
/// new reading is checked against.
/// The date is isolated (`bdi`) so that a narrow screen wraps around it, not inside it.
fn baseline(lang: Lang, meter: Option<Meter>) -> Option<impl IntoView> {
    let info = meter?.info?;
    let (reading, at) = (info.last_reading?, info.last_read_at?);
    let label = t(lang, Text::LastReading);
    Some(
        view! { {label} ": " <bdi>{number(lang, &reading.to_string())}</bdi> " " <bdi>"(" {datetime(lang, at)} ")"</bdi> },
    )
}

/// Saves a declaration made on this phone, shows it, and sends it.
async fn queue(state: AppState, declaration: Declaration) -> Result<(), String> {
    outbox::save_declarations(std::slice::from_ref(&declaration)).await.map_err(|e| format!("IndexedDB: {}", e.0))?;
    // A sync reading the outbox meanwhile may have listed it already.
    state.declarations.update(|all| {
        if !all.iter().any(|d| d.id == declaration.id) {
            all.insert(0, declaration);
        }
    });
    Ok(())
}

#[component]
fn History() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    view! {
        <section>
            <h2>{move || t(lang.get(), Text::Outbox)}</h2>
            <ul class="history">
                {move || state.declarations.get().into_iter().map(|d| {
                    let l = lang.get();
                    let (label, class) = match (d.state, d.review_accepted) {
                        (_, Some(true)) => (Text::ApprovedOnReview, "accepted"),
                        (_, Some(false)) => (Text::RejectedOnReview, "rejected"),
                        (State::Waiting, None) => (Text::Waiting, "waiting"),
                        (State::Accepted, None) => (Text::Accepted, "accepted"),
                        (State::NeedsReview, None) => (Text::UnderReview, "review"),
                        (State::Rejected, None) => (Text::Rejected, "rejected"),
                    };
                    // A reviewer's reason takes the place of the first outcome's message.
                    let reason = d.review_reason.clone().or_else(|| d.message.clone());
                    let sms = (d.state == State::Waiting)
                        .then(|| format!("sms:500025194?body={}", d.sms_body()));
                    view! {
                        <li class=format!("declaration {class}") data-id=d.id.to_string()>
                            <div>
                                <bdi>{number(l, &d.subscription)}</bdi> " · "
                                <strong>{number(l, &d.reading.to_string())}</strong> " · "
                                {datetime(l, d.read_at)}
                            </div>
                            <div>
                                <span class="state">{t(l, label)}</span> " · "
                                {t(l, Text::Receipt)} " " <bdi>{number(l, &d.receipt())}</bdi>
                            </div>
                            {d.tracking_code.clone().map(|code| {
                                let subscription = d.subscription.clone();
                                view! {
                                    <div>
                                        {t(l, Text::Tracking)} ": " <bdi class="tracking">{number(l, &code)}</bdi> " "
                                        <button class="link" on:click=move |_| dispute(state, &subscription, &code)>
                                            {t(l, Text::Dispute)}
                                        </button>
                                    </div>
                                }
                            })}
                            {(d.tracking_code.is_none() && d.state != State::Waiting).then(|| {
                                // Sent but given no tracking code: the receipt names it.
                                let (subscription, receipt) = (d.subscription.clone(), d.receipt());
                                view! {
                                    <button class="link" on:click=move |_| dispute(state, &subscription, &receipt)>
                                        {t(l, Text::Dispute)}
                                    </button>
                                }
                            })}
                            {d.consumption_m3.filter(|_| class == "accepted").map(|m3| view! {
                                <div class="consumption">
                                    {t(l, Text::Consumption)} ": " {number(l, &m3.to_string())} " " {t(l, Text::CubicMetres)}
                                </div>
                            })}
                            {reason.filter(|_| class != "accepted").map(|m| view! { <div class="reason">{m}</div> })}
                            {sms.map(|href| view! { <a href=href>{t(l, Text::SendBySms)}</a> })}
                            {(d.refused_for_clock() && !crate::model::resent(&d, &state.declarations.get())).then(|| {
                                // The phone's clock was wrong, not the reading: one tap sends the
                                // same reading again, dated with the server's clock.
                                let refused = d.clone();
                                view! {
                                    <button class="link resend" on:click=move |_| {
                                        let again = refused.redated(sync::clock(state), now());
                                        spawn_local(async move {
                                            if queue(state, again).await.is_ok() {
                                                sync::sync_once(state).await;
                                            }
                                        });
                                    }>{t(l, Text::ResendRedated)}</button>
                                }
                            })}
                            {(class == "rejected" && !d.refused_for_clock()).then(|| {
                                // A rejected declaration is final: correcting it makes a new one.
                                let (subscription, reading) = (d.subscription.clone(), d.reading.to_string());
                                view! {
                                    <button class="link" on:click=move |_| {
                                        state.form_meter.set(subscription.clone());
                                        state.form_reading.set(reading.clone());
                                    }>{t(l, Text::CorrectAndResend)}</button>
                                }
                            })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}

/// The meter chosen in a form, or the first one.
fn chosen_meter(state: AppState, chosen: RwSignal<String>) -> Option<Meter> {
    let meters = state.meters.get();
    let chosen = chosen.get();
    meters.iter().find(|m| m.subscription == chosen).or(meters.first()).cloned()
}

/// A choice among the meters on this phone.
#[component]
fn MeterChoice(chosen: RwSignal<String>, id: &'static str) -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <select id=id name=id on:change=move |ev| chosen.set(event_target_value(&ev))>
            {move || state.meters.get().into_iter().map(|m| {
                let label = number(state.lang.get(), &m.subscription);
                let selected = m.subscription == chosen.get();
                view! { <option value=m.subscription.clone() selected=selected>{label}</option> }
            }).collect_view()}
        </select>
    }
}

/// Fills the complaint form to dispute one declaration, and brings the form into view.
fn dispute(state: AppState, subscription: &str, tracking_code: &str) {
    state.form_complaint_meter.set(subscription.to_owned());
    state.form_about.set(tracking_code.to_owned());
    if let Some(form) = document().get_element_by_id("complaint") {
        form.scroll_into_view();
    }
}

#[component]
fn Complaints() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let chosen = state.form_complaint_meter;
    let about = state.form_about;
    let kind = RwSignal::new(ComplaintKind::Dispute);
    let text = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<&'static str>);
    let file = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let l = lang.get();
        let Some(meter) = chosen_meter(state, chosen) else {
            problem.set(Some(t(l, Text::NoMeter)));
            return;
        };
        // The same checks as the server's, so that a mistake is fixed here rather than refused
        // after the complaint waited in the queue.
        let typed = about.get();
        let about_code = match typed.trim() {
            "" => None,
            code => match (TrackingCode::parse(code), shared::Receipt::parse(code)) {
                (Some(code), _) => Some(code.to_string()),
                (None, Some(receipt)) => Some(receipt.to_string()),
                (None, None) => {
                    problem.set(Some(ComplaintCode::TrackingCodeInvalid.message(l)));
                    return;
                }
            },
        };
        let body = match complaint_text(&text.get()) {
            Ok(body) => body.to_owned(),
            Err(code) => {
                problem.set(Some(code.message(l)));
                return;
            }
        };
        let complaint = Complaint {
            id: uuid::Uuid::now_v7(),
            subscription: meter.subscription,
            kind: kind.get(),
            about: about_code,
            text: body,
            made_at: now(),
            received: None,
            message: None,
            number: None,
            answer: None,
        };
        spawn_local(async move {
            // Written to the device before the form clears.
            match outbox::save_complaints(std::slice::from_ref(&complaint)).await {
                Err(e) => problem.set(Some(e.0)),
                Ok(()) => {
                    state.complaints.update(|all| {
                        if !all.iter().any(|c| c.id == complaint.id) {
                            all.insert(0, complaint);
                        }
                    });
                    text.set(String::new());
                    about.set(String::new());
                    problem.set(None);
                    sync::sync_once(state).await;
                }
            }
        });
    };
    let set_kind = move |ev| {
        kind.set(if event_target_value(&ev) == "service" { ComplaintKind::Service } else { ComplaintKind::Dispute })
    };
    view! {
        <section>
            <h2>{move || t(lang.get(), Text::Complaints)}</h2>
            <form id="complaint" on:submit=file>
                <label for="complaint_meter">{move || t(lang.get(), Text::Meter)}</label>
                <MeterChoice chosen=chosen id="complaint_meter"/>
                <label for="kind">{move || t(lang.get(), Text::Subject)}</label>
                <select id="kind" name="kind" on:change=set_kind>
                    <option value="dispute">{move || t(lang.get(), Text::KindDispute)}</option>
                    <option value="service">{move || t(lang.get(), Text::KindService)}</option>
                </select>
                <label for="about">{move || t(lang.get(), Text::About)}</label>
                <input id="about" name="about" inputmode="numeric" autocomplete="off" dir="ltr"
                    prop:value=move || about.get() on:input=move |ev| about.set(event_target_value(&ev))/>
                <label for="complaint_text">{move || t(lang.get(), Text::Description)}</label>
                <textarea id="complaint_text" name="text" rows="3" maxlength="1000"
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                <p class="problem" role="alert">{move || problem.get()}</p>
                <button type="submit">{move || t(lang.get(), Text::Send)}</button>
            </form>
            <ul class="history">
                {move || state.complaints.get().into_iter().map(|c| {
                    let l = lang.get();
                    let (label, class) = match (c.received, c.answer.is_some()) {
                        (None, _) => (Text::Waiting, "waiting"),
                        (Some(false), _) => (Text::NotReceived, "rejected"),
                        (Some(true), false) => (Text::AwaitingAnswer, "review"),
                        (Some(true), true) => (Text::Answer, "accepted"),
                    };
                    let refusal = c.message.filter(|_| c.received == Some(false));
                    view! {
                        <li class=format!("complaint {class}") data-id=c.id.to_string()>
                            <div>
                                <span class="state">{t(l, label)}</span>
                                {c.number.map(|n| view! {
                                    " · " {t(l, Text::ComplaintNumber)} " " <bdi class="number">{number(l, &n)}</bdi>
                                })}
                            </div>
                            <div class="text">{c.text}</div>
                            {c.answer.map(|a| view! { <div class="answer">{a}</div> })}
                            {refusal.map(|m| view! { <div class="reason">{m}</div> })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}
