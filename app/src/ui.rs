//! The screens: the subscriber's meters (home), adding one, declaring a reading with its outcome
//! card, the history of declarations, and complaints; a status bar and a tab bar around them.
//! They wrap plain types in signals and call the rules, the device store and the sync loop; they
//! decide nothing themselves.
//!
//! The screen on show follows `location.hash` (`#declare`, `#history`, …), so the phone's back
//! button goes back a screen and a link can open one. Moving to a screen puts the keyboard and
//! screen-reader focus on its heading.

use std::time::Duration;

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::rules::{self, Candidate};
use shared::wire::{ComplaintCode, ComplaintKind, complaint_text};
use shared::{Lang, MeterSerial, Reading, Status, SubscriptionNumber, TrackingCode};
use uuid::Uuid;

use crate::api::ApiError;
use crate::i18n::{Facts, Text, clock_warning, datetime, number, t};
use crate::model::{Complaint, Declaration, Meter, State};
use crate::outbox;
use crate::sync::{self, AppState, now};

/// The app's screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Home,
    AddMeter,
    Declare,
    History,
    Complaints,
}

impl Screen {
    fn hash(self) -> &'static str {
        match self {
            Self::Home => "#meters",
            Self::AddMeter => "#add",
            Self::Declare => "#declare",
            Self::History => "#history",
            Self::Complaints => "#complaints",
        }
    }

    fn of_hash(hash: &str) -> Self {
        [Self::AddMeter, Self::Declare, Self::History, Self::Complaints]
            .into_iter()
            .find(|s| s.hash() == hash)
            .unwrap_or(Self::Home)
    }

    fn current() -> Self {
        Self::of_hash(&window().location().hash().unwrap_or_default())
    }
}

/// Shows `screen`, as a new entry in the browser's history.
fn go(state: AppState, screen: Screen) {
    if state.screen.get_untracked() != screen {
        let _ = window().location().set_hash(screen.hash());
        state.screen.set(screen);
    }
}

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
        screen: RwSignal::new(Screen::current()),
        last_saved: RwSignal::new(None),
        form_kind: RwSignal::new(ComplaintKind::Dispute),
        form_corrects: RwSignal::new(None),
        photos: RwSignal::new(Vec::new()),
        expects_review: RwSignal::new(None),
    };
    provide_context(state);
    let loaded = RwSignal::new(false);

    spawn_local(async move {
        if let Ok(meters) = outbox::meters().await {
            state.meters.set(meters);
        }
        if let Ok(mut declarations) = outbox::declarations().await {
            crate::model::newest_first(&mut declarations);
            // The service worker may have sent some while no page was open.
            let by_worker = declarations.iter().filter_map(|d| d.answered_at).max();
            if by_worker > state.last_sync.get_untracked() {
                state.last_sync.set(by_worker);
            }
            state.declarations.set(declarations);
        }
        if let Ok(mut complaints) = outbox::complaints().await {
            crate::model::newest_first_complaints(&mut complaints);
            state.complaints.set(complaints);
        }
        sync::load_photos(state).await;
        loaded.set(true);
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
    let _ = window_event_listener(ev::hashchange, move |_| state.screen.set(Screen::current()));
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
    // A new screen starts at its top, with the focus on its heading.
    Effect::new(move |previous: Option<Screen>| {
        let screen = state.screen.get();
        if previous.is_some_and(|p| p != screen) {
            request_animation_frame(|| {
                window().scroll_to_with_x_and_y(0.0, 0.0);
                if let Some(heading) = document().query_selector("main h2").ok().flatten() {
                    focus(&heading);
                }
            });
        }
        screen
    });
    let switch = move |_| {
        let next = if lang.get() == Lang::Fa { Lang::En } else { Lang::Fa };
        sync::save_lang(next);
        lang.set(next);
    };
    view! {
        <header>
            <h1><Flame/> {move || t(lang.get(), Text::Title)}</h1>
            <button class="link" on:click=switch>{move || t(lang.get(), Text::Language)}</button>
        </header>
        <Tabs/>
        <SyncStatus/>
        <main data-screen=move || state.screen.get().hash() data-ready=move || loaded.get().to_string()>
            {move || match state.screen.get() {
                Screen::Home => view! { <Meters/> }.into_any(),
                Screen::AddMeter => view! { <AddMeter/> }.into_any(),
                Screen::Declare => view! { <Declare/> }.into_any(),
                Screen::History => view! { <History/> }.into_any(),
                Screen::Complaints => view! { <Complaints/> }.into_any(),
            }}
        </main>
    }
}

/// The app's mark: a gas flame.
#[component]
fn Flame() -> impl IntoView {
    view! {
        <svg class="mark" viewBox="0 0 24 24" aria-hidden="true" width="24" height="24">
            <path fill="#ffb02e" d="M12 2c1 3.5 5.5 6.2 5.5 11.2A5.5 5.5 0 0 1 12 19a5.5 5.5 0 0 1-5.5-5.8C6.5 10 8.6 8.3 9.3 5.8c.9 1.7 1.6 2.6 2.9 3.2C12.4 6.6 12.3 4.4 12 2z"/>
            <path fill="#fff" d="M12 11.5c.5 1.6 2.4 2.7 2.4 4.6a2.4 2.4 0 0 1-4.8 0c0-1.3.8-2.1 1.3-3 .4.6.7.9 1.1 1.1z"/>
        </svg>
    }
}

/// The tab bar: the three places a subscriber goes.
#[component]
fn Tabs() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let tab = move |screen: Screen, label: Text| {
        let current = move || {
            let on = state.screen.get();
            let here = on == screen || (screen == Screen::Home && matches!(on, Screen::AddMeter | Screen::Declare));
            here.then_some("page")
        };
        view! {
            <a href=screen.hash() aria-current=current on:click=move |ev: ev::MouseEvent| {
                ev.prevent_default();
                go(state, screen);
            }>{move || t(lang.get(), label)}</a>
        }
    };
    view! {
        <nav class="tabs" aria-label=move || t(lang.get(), Text::Menu)>
            {tab(Screen::Home, Text::Home)}
            {tab(Screen::History, Text::Outbox)}
            {tab(Screen::Complaints, Text::Complaints)}
        </nav>
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
            <span class=move || { if unsent() > 0 { "count waiting" } else { "count" } }>
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
            {move || (unsent() > 0).then(|| view! {
                <button class="secondary" id="send-now" on:click=move |_| spawn_local(sync::sync_once(state))
                    disabled=move || state.syncing.get()>
                    {move || t(lang.get(), if state.syncing.get() { Text::Sending } else { Text::SendNow })}
                </button>
            })}
        </section>
    }
}

/// Home: the meters on this phone, each with its last reading and one big "declare" action.
/// With no meter yet, the form to add one.
#[component]
fn Meters() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let removing = RwSignal::new(None::<String>);
    view! {
        <section>
            <h2 tabindex="-1">{move || t(lang.get(), Text::MyMeters)}</h2>
            {move || state.meters.get().is_empty().then(|| view! { <AddMeterForm/> })}
            <ul class="meters">
                {move || state.meters.get().into_iter().map(|m| {
                    let l = lang.get();
                    let verified = m.info.is_some();
                    let last = m.info.as_ref().and_then(|i| Some((i.last_reading?, i.last_read_at?)));
                    let waiting = state.declarations.get().iter()
                        .filter(|d| d.subscription == m.subscription && d.state == State::Waiting).count();
                    let (declare_for, remove_for, edit_for, confirm_for) =
                        (m.subscription.clone(), m.subscription.clone(), m.clone(), m.subscription.clone());
                    view! {
                        <li class="meter">
                            <div class="who">
                                <bdi class="sub">{number(l, &m.subscription)}</bdi>
                                <bdi class="serial" dir="ltr">{m.meter_serial.clone()}</bdi>
                                <small class=if verified { "ok" } else { "pending" }>
                                    {t(l, if verified { Text::Verified } else { Text::NotVerified })}
                                </small>
                            </div>
                            {last.map(|(reading, at)| view! {
                                <div class="last">
                                    {t(l, Text::LastReading)} ": " <strong><bdi>{number(l, &reading.to_string())}</bdi></strong>
                                    <small class="date"><bdi>{datetime(l, at)}</bdi></small>
                                </div>
                            })}
                            <button class="declare" on:click=move |_| {
                                state.form_meter.set(declare_for.clone());
                                state.last_saved.set(None);
                                go(state, Screen::Declare);
                            }>{t(l, Text::Declare)}</button>
                            {move || if removing.get().as_deref() == Some(confirm_for.as_str()) {
                                let subscription = remove_for.clone();
                                view! {
                                    <div class="confirm" id="remove-question" role="alert">
                                        <p>{crate::i18n::remove_question(lang.get(), waiting)}</p>
                                        <button class="danger" disabled=move || state.syncing.get()
                                            on:click=move |_| remove_meter(state, subscription.clone())>
                                            {t(lang.get(), Text::Remove)}
                                        </button>
                                        <button class="secondary" on:click=move |_| removing.set(None)>
                                            {t(lang.get(), Text::Cancel)}
                                        </button>
                                    </div>
                                }.into_any()
                            } else {
                                let (for_remove, for_edit) = (confirm_for.clone(), edit_for.clone());
                                view! {
                                    <div class="actions">
                                        {for_edit.info.is_none().then(|| {
                                            let meter = for_edit.clone();
                                            view! {
                                                <button class="link" on:click=move |_| {
                                                    state.form_meter.set(meter.subscription.clone());
                                                    go(state, Screen::AddMeter);
                                                }>{t(lang.get(), Text::Edit)}</button>
                                            }
                                        })}
                                        <button class="link" on:click=move |_| {
                                            removing.set(Some(for_remove.clone()));
                                            reveal("remove-question");
                                        }>
                                            {t(lang.get(), Text::Remove)}
                                        </button>
                                    </div>
                                }.into_any()
                            }}
                        </li>
                    }
                }).collect_view()}
            </ul>
            {move || (!state.meters.get().is_empty()).then(|| view! {
                <button class="secondary" on:click=move |_| { state.form_meter.set(String::new()); go(state, Screen::AddMeter) }>
                    {t(lang.get(), Text::AddAnother)}
                </button>
            })}
            <p class="hint" id="storage">
                {move || state.persistent.get().filter(|p| !p).map(|_| t(lang.get(), Text::StorageBestEffort))}
            </p>
            {move || sync::ios_tab().then(|| view! { <p class="hint">{t(lang.get(), Text::InstallOnIos)}</p> })}
        </section>
    }
}

/// Removes a meter from the phone; its readings still waiting are taken back with it (they
/// would be refused without it), the ones sent stay as history.
fn remove_meter(state: AppState, subscription: String) {
    spawn_local(async move {
        let taken: Vec<Declaration> = state
            .declarations
            .get_untracked()
            .iter()
            .filter(|d| d.subscription == subscription && d.state == State::Waiting)
            .map(Declaration::discarded)
            .collect();
        if outbox::save_declarations(&taken).await.is_err() || outbox::remove_meter(&subscription).await.is_err() {
            return;
        }
        state.declarations.update(|all| shared::outbox::replace_by_id(all, &taken));
        state.meters.update(|ms| ms.retain(|m| m.subscription != subscription));
    });
}

/// Adding a meter, or correcting one not verified yet (`state.form_meter` names it).
#[component]
fn AddMeter() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    view! {
        <section>
            <h2 tabindex="-1">{move || t(lang.get(), Text::AddMeter)}</h2>
            <AddMeterForm/>
        </section>
    }
}

#[component]
fn AddMeterForm() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    // Editing a meter not verified yet starts from what was typed.
    let editing = state.meters.get_untracked().into_iter().find(|m| m.subscription == state.form_meter.get_untracked());
    let subscription = RwSignal::new(editing.as_ref().map(|m| m.subscription.clone()).unwrap_or_default());
    let serial = RwSignal::new(editing.as_ref().map(|m| m.meter_serial.clone()).unwrap_or_default());
    let replaces = editing.map(|m| m.subscription);
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
        let replaces = replaces.clone();
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
            // A corrected meter: its waiting readings carry the corrected serial.
            let mut fixed = Vec::new();
            if let Some(old) = replaces.as_deref() {
                fixed = state
                    .declarations
                    .get_untracked()
                    .into_iter()
                    .filter(|d| d.subscription == old && d.state == State::Waiting)
                    .map(|d| Declaration {
                        subscription: meter.subscription.clone(),
                        meter_serial: meter.meter_serial.clone(),
                        ..d
                    })
                    .collect();
                if old != meter.subscription && outbox::remove_meter(old).await.is_err() {
                    return;
                }
            }
            if outbox::save_meter(&meter).await.is_ok() && outbox::save_declarations(&fixed).await.is_ok() {
                state.declarations.update(|all| shared::outbox::replace_by_id(all, &fixed));
                state.meters.update(|ms| {
                    ms.retain(|m| m.subscription != meter.subscription && Some(&m.subscription) != replaces.as_ref());
                    ms.push(meter.clone());
                });
                subscription.set(String::new());
                serial.set(String::new());
                state.form_meter.set(meter.subscription.clone());
                state.last_saved.set(None);
                go(state, Screen::Declare);
            }
        });
    };
    let invalid = move || problem.get().is_some().then_some("true");
    view! {
        <form on:submit=add>
            <p class="hint">{move || t(lang.get(), Text::AddFirst)}</p>
            <label for="subscription">{move || t(lang.get(), Text::Subscription)}</label>
            <input id="subscription" name="subscription" inputmode="numeric" autocomplete="off"
                aria-describedby="meter-problem" aria-invalid=invalid
                prop:value=move || subscription.get() on:input=move |ev| subscription.set(event_target_value(&ev))/>
            <label for="meter_serial">{move || t(lang.get(), Text::MeterSerial)}</label>
            <input id="meter_serial" name="meter_serial" autocomplete="off" dir="ltr"
                aria-describedby="meter-problem" aria-invalid=invalid
                prop:value=move || serial.get() on:input=move |ev| serial.set(event_target_value(&ev))/>
            <p class="problem" id="meter-problem" role="alert">{move || problem.get()}</p>
            <button type="submit">{move || t(lang.get(), Text::AddMeter)}</button>
        </form>
    }
}

/// What the rules say of a reading before it is saved: nothing, a warning it will be held for
/// review, or a refusal it cannot escape.
enum Check {
    Fine,
    Held(String),
    Refused(String),
}

fn check(state: AppState, meter: &Meter, value: Reading) -> Check {
    // Times are the server's as far as the phone knows it, as the server will judge them.
    let server_now = sync::clock(state).server_now(now());
    let candidate = Candidate { reading: value, read_at: server_now };
    let context = meter.context();
    let declarations = state.declarations.get_untracked();
    let corrected = correcting(state).and_then(|id| declarations.iter().find(|d| d.id == id));
    let chain = meter.chain(&declarations, corrected);
    let decision = rules::reconcile(&context, &chain, &candidate, server_now);
    let Some(code) = decision.code.filter(|_| decision.status != Status::Accepted) else { return Check::Fine };
    let last = chain.points().last().copied();
    let days = last.map_or(0, |p| (server_now - p.read_at).whole_days().max(0) as u64);
    let consumption = decision.consumption_m3.or_else(|| last.and_then(|p| value.value().checked_sub(p.reading)));
    let times_usual = match (consumption, context.avg_daily_m3) {
        (Some(m3), Some(avg)) if avg > 0.0 => Some((m3 as f64 / (avg * days.max(1) as f64)).round() as u64),
        _ => None,
    };
    let facts = Facts {
        code,
        digits: context.digits,
        last_reading: last.map(|p| p.reading),
        consumption_m3: consumption,
        days,
        times_usual,
    };
    let lang = state.lang.get_untracked();
    if decision.status == Status::Rejected {
        Check::Refused(crate::i18n::refusal(lang, &facts))
    } else {
        Check::Held(crate::i18n::review_warning(lang, &facts))
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
    let meter = move || chosen_meter(state, chosen);
    let save = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let Some(meter) = meter() else {
            warning.set(Some(t(lang.get(), Text::NoMeter).to_owned()));
            return;
        };
        let Ok(value) = Reading::parse(&reading.get()) else {
            warning.set(Some(t(lang.get(), Text::BadReading).to_owned()));
            return;
        };
        let checked = check(state, &meter, value);
        let expects_review = matches!(checked, Check::Held(_));
        match checked {
            Check::Refused(why) => {
                warning.set(Some(why));
                confirm.set(false);
                reveal("reading-problem");
                return;
            }
            Check::Held(why) if !confirm.get() => {
                warning.set(Some(why));
                confirm.set(true);
                reveal("reading-problem");
                return;
            }
            Check::Held(_) | Check::Fine => {}
        }
        let declaration = match correcting(state) {
            Some(earlier) => Declaration::correcting(&meter, value, earlier, now(), sync::clock(state)),
            None => Declaration::new(&meter, value, now(), sync::clock(state)),
        };
        spawn_local(async move {
            let id = declaration.id;
            // Written to the device before the screen says "saved".
            match queue(state, declaration).await {
                Err(e) => warning.set(Some(e)),
                Ok(()) => {
                    state.last_saved.set(Some(id));
                    state.expects_review.set(expects_review.then_some(id));
                    state.form_corrects.set(None);
                    reading.set(String::new());
                    warning.set(None);
                    confirm.set(false);
                    request_animation_frame(|| window().scroll_to_with_x_and_y(0.0, 0.0));
                    sync::sync_once(state).await;
                }
            }
        });
    };
    let has_meter = move || !state.meters.get().is_empty();
    view! {
        <section>
            <h2 tabindex="-1">{move || t(lang.get(), Text::Declare)}</h2>
            <Outcome/>
            {move || (!has_meter()).then(|| view! { <AddMeterForm/> })}
            {move || has_meter().then(|| view! {
                <form on:submit=save>
                    <Correcting/>
                    <label for="meter">{move || t(lang.get(), Text::Meter)}</label>
                    <MeterChoice chosen=chosen id="meter"/>
                    <label for="reading">{move || t(lang.get(), Text::Reading)}</label>
                    <input id="reading" name="reading" inputmode="numeric" autocomplete="off" dir="ltr"
                        aria-describedby="baseline reading-problem"
                        aria-invalid=move || warning.get().is_some().then_some("true")
                        prop:value=move || reading.get()
                        on:input=move |ev| { reading.set(event_target_value(&ev)); confirm.set(false); warning.set(None); }/>
                    <small id="baseline">{move || baseline(lang.get(), meter())}</small>
                    <p class="problem" id="reading-problem" role="alert">{move || warning.get()}</p>
                    <button type="submit">
                        {move || t(lang.get(), if confirm.get() { Text::SaveForReview } else { Text::Save })}
                    </button>
                </form>
            })}
        </section>
        {move || meter().map(|m| view! {
            <section>
                <h3>{move || t(lang.get(), Text::OfThisMeter)}</h3>
                <DeclarationList only=Some(m.subscription.clone())/>
            </section>
        })}
    }
}

/// The card at the top of the declare screen after a save: where the reading is, from "saved on
/// this phone" to "sent" to its outcome, with the tracking code large and copyable.
#[component]
fn Outcome() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let copied = RwSignal::new(false);
    let current = move || {
        let id = state.last_saved.get()?;
        state.declarations.get().into_iter().find(|d| d.id == id)
    };
    view! {
        <div class="outcome-live" aria-live="polite" aria-atomic="true">
        {move || current().filter(|d| d.state != State::Discarded).map(|d| {
            let l = lang.get();
            let (class, label) = outcome_label(&d);
            let code = d.tracking_code.clone();
            let code_for_copy = code.clone().unwrap_or_default();
            let waiting = d.state == State::Waiting;
            // Held by the server, or by the phone's own check before it could be sent.
            let held = class == "review" || state.expects_review.get() == Some(d.id);
            let taken = d.clone();
            view! {
                <div class=format!("outcome {class}") id="outcome" data-id=d.id.to_string()>
                    <p class="state"><strong>{t(l, label)}</strong></p>
                    {waiting.then(|| view! {
                        // Only this line follows the sync: the card itself is not drawn again.
                        <p>{move || t(lang.get(), if state.syncing.get() { Text::Sending } else { Text::SavedOnPhone })}</p>
                    })}
                    <p class="reading">
                        {t(l, Text::Reading)} ": " <strong><bdi>{number(l, &d.reading.to_string())}</bdi></strong>
                    </p>
                    {code.map(|c| view! {
                        <p class="code">
                            <span>{t(l, Text::Tracking)}</span>
                            <output class="tracking" dir="ltr">{number(l, &c)}</output>
                            <button class="secondary" on:click=move |_| {
                                copied.set(share_or_copy(&code_for_copy));
                            }>{move || t(lang.get(), match (copied.get(), can_share()) {
                                (true, _) => Text::Copied,
                                (false, true) => Text::Share,
                                (false, false) => Text::Copy,
                            })}</button>
                        </p>
                    })}
                    {d.consumption_m3.filter(|_| class == "accepted").map(|m3| view! {
                        <p class="consumption">
                            {t(l, Text::Consumption)} ": " {number(l, &m3.to_string())} " " {t(l, Text::CubicMetres)}
                        </p>
                    })}
                    {(class == "review").then(|| view! { <p>{t(l, Text::HeldNext)}</p> })}
                    {d.message.clone().filter(|_| class != "accepted").map(|m| view! { <p class="reason">{m}</p> })}
                    <p class="receipt" id="receipt"><small>
                        {t(l, Text::Receipt)} ": " <bdi>{number(l, &d.receipt())}</bdi>
                    </small></p>
                    {waiting.then(|| view! {
                        <button class="secondary retype" disabled=move || state.syncing.get()
                            on:click=move |_| retype(state, &taken)>{t(l, Text::Retype)}</button>
                    })}
                    {correct_button(state, &d, l)}
                    <MeterPhoto id=d.id review=held />
                    <button class="link" on:click=move |_| state.last_saved.set(None)>{t(l, Text::NewReading)}</button>
                </div>
            }
        })}
        </div>
    }
}

/// The shrunk photo's budget: legible digits in about 60 KB.
const PHOTO_BUDGET: u32 = 60 * 1024;

/// A declaration's meter photo: taken with the rear camera or picked, shrunk on the phone, kept
/// in IndexedDB beside the declaration, and sent after it (`sync::send_photos`). Offered on every
/// outcome, and asked for when the reading is held for review.
#[component]
fn MeterPhoto(id: Uuid, review: bool) -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let failed = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let shown = move || state.photos.get().into_iter().find(|p| p.id == id);
    let picked = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlInputElement>(t).ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|files| files.get(0)) else { return };
        busy.set(true);
        spawn_local(async move {
            let kept = match crate::api::shrink(&file, PHOTO_BUDGET).await {
                Some(blob) => {
                    let photo = outbox::Photo { id, blob, sent: false };
                    outbox::save_photo(&photo).await.ok().map(|()| sync::PhotoShown::of(&photo))
                }
                None => None,
            };
            busy.set(false);
            failed.set(kept.is_none());
            if let Some(kept) = kept {
                state.photos.update(|all| {
                    all.retain(|p| p.id != id);
                    all.push(kept);
                });
                sync::sync_once(state).await;
            }
        });
    };
    view! {
        <div class="photo">
            {move || {
                let l = lang.get();
                match shown() {
                    Some(photo) => view! {
                        <figure>
                            <img src=photo.url.clone() alt=t(l, Text::MeterPhoto) />
                            <figcaption>
                                {t(l, if photo.sent { Text::PhotoSent } else { Text::PhotoKept })}
                                " — " {number(l, &photo.bytes.div_ceil(1024).to_string())} " " {t(l, Text::Kilobytes)}
                            </figcaption>
                        </figure>
                    }
                    .into_any(),
                    None => view! {
                        <div>
                            {review.then(|| view! { <p>{t(l, Text::PhotoHelps)}</p> })}
                            <label class="button secondary photo-pick">
                                {t(l, Text::AddPhoto)}
                                <input type="file" accept="image/*" capture="environment" name="photo"
                                    disabled=move || busy.get() on:change=picked />
                            </label>
                        </div>
                    }
                    .into_any(),
                }
            }}
            {move || failed.get().then(|| view! { <p class="reason" role="alert">{t(lang.get(), Text::PhotoFailed)}</p> })}
        </div>
    }
}

/// The reading the declare form is correcting, while that reading may still be corrected.
fn correcting(state: AppState) -> Option<Uuid> {
    let id = state.form_corrects.get()?;
    let server_now = sync::clock(state).server_now(now());
    state.declarations.get().iter().find(|d| d.id == id).filter(|d| d.correctable(server_now)).map(|d| d.id)
}

/// Above the declare form while it corrects an earlier reading: which one, and a way out.
#[component]
fn Correcting() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let earlier = move || {
        let id = correcting(state)?;
        state.declarations.get().into_iter().find(|d| d.id == id)
    };
    move || {
        earlier().map(|d| {
            let l = lang.get();
            view! {
                <p class="correcting" id="correcting">
                    {t(l, Text::Replaces)} " " <strong><bdi>{number(l, &d.reading.to_string())}</bdi></strong>
                    " " <bdi>"(" {datetime(l, d.read_at)} ")"</bdi> " "
                    <button type="button" class="link" on:click=move |_| state.form_corrects.set(None)>
                        {t(l, Text::Cancel)}
                    </button>
                </p>
            }
        })
    }
}

/// Opens the declare form to replace an answered reading with a corrected one.
fn correct(state: AppState, declaration: &Declaration) {
    state.form_meter.set(declaration.subscription.clone());
    state.form_reading.set(declaration.reading.to_string());
    state.form_corrects.set(Some(declaration.id));
    state.last_saved.set(None);
    go(state, Screen::Declare);
    request_animation_frame(|| {
        if let Some(field) = document().get_element_by_id("reading") {
            focus(&field);
        }
    });
}

/// The "correct this reading" action, where the reading may still be replaced.
fn correct_button(state: AppState, d: &Declaration, l: Lang) -> Option<impl IntoView + use<>> {
    let server_now = sync::clock(state).server_now(now());
    d.correctable(server_now).then(|| {
        let taken = d.clone();
        view! {
            <button class="link correct" on:click=move |_| correct(state, &taken)>{t(l, Text::CorrectReading)}</button>
        }
    })
}

/// What a declaration's card and list entry say of its state, and their class.
fn outcome_label(d: &Declaration) -> (&'static str, Text) {
    if d.replaced_by.is_some() {
        return ("discarded", Text::Replaced);
    }
    match (d.state, d.review_accepted) {
        (_, Some(true)) => ("accepted", Text::ApprovedOnReview),
        (_, Some(false)) => ("rejected", Text::RejectedOnReview),
        (State::Waiting, None) => ("waiting", Text::Waiting),
        (State::Accepted, None) => ("accepted", Text::Accepted),
        (State::NeedsReview, None) => ("review", Text::UnderReview),
        (State::Rejected, None) => ("rejected", Text::Rejected),
        (State::Discarded, None) => ("discarded", Text::Discard),
    }
}

/// A method of a JavaScript object, where the browser has it.
fn method(object: &wasm_bindgen::JsValue, name: &str) -> Option<js_sys::Function> {
    let f = js_sys::Reflect::get(object, &name.into()).ok()?;
    wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok()
}

/// Whether the phone has a share sheet.
fn can_share() -> bool {
    method(&window().navigator().into(), "share").is_some()
}

/// Shares the tracking code where the phone has a share sheet, or copies it; whether it did.
fn share_or_copy(code: &str) -> bool {
    let navigator: wasm_bindgen::JsValue = window().navigator().into();
    if let Some(share) = method(&navigator, "share") {
        let data = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&data, &"text".into(), &code.into());
        return share.call1(&navigator, &data).is_ok();
    }
    let clipboard = js_sys::Reflect::get(&navigator, &"clipboard".into()).unwrap_or_default();
    method(&clipboard, "writeText").is_some_and(|f| f.call1(&clipboard, &code.into()).is_ok())
}

/// Scrolls an element into the middle of the screen after the next paint.
fn reveal(id: &'static str) {
    request_animation_frame(move || {
        if let Some(element) = document().get_element_by_id(id)
            && let Some(f) = method(&element, "scrollIntoView")
        {
            let options = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&options, &"block".into(), &"center".into());
            let _ = f.call1(&element, &options);
        }
    });
}

/// Puts the focus on an element, as a tap would.
fn focus(element: &web_sys::Element) {
    if let Some(f) = method(element, "focus") {
        let _ = f.call0(element);
    }
}

/// Takes back a reading still waiting and puts it in the form again to be retyped.
fn retype(state: AppState, declaration: &Declaration) {
    let taken = declaration.discarded();
    let (subscription, reading) = (declaration.subscription.clone(), declaration.reading.to_string());
    spawn_local(async move {
        if state.syncing.get_untracked() || outbox::save_declarations(std::slice::from_ref(&taken)).await.is_err() {
            return;
        }
        state.declarations.update(|all| shared::outbox::replace_by_id(all, std::slice::from_ref(&taken)));
        state.last_saved.set(None);
        state.form_meter.set(subscription);
        state.form_reading.set(reading);
        go(state, Screen::Declare);
        if let Some(field) = document().get_element_by_id("reading") {
            focus(&field);
        }
    });
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
    let lang = Some(sync::lang_tag(state.lang.get_untracked()).to_owned());
    let declaration = Declaration { device_id: Some(sync::device_id()), lang, ..declaration };
    outbox::save_declarations(std::slice::from_ref(&declaration)).await.map_err(|e| format!("IndexedDB: {}", e.0))?;
    // Where the browser has Background Sync, the service worker sends it even if this page is
    // closed before the signal returns (`index.html` asks for the sync).
    let window: wasm_bindgen::JsValue = window().into();
    if let Some(ask) = method(&window, "kontorSaved") {
        let _ = ask.call0(&window);
    }
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
            <h2 tabindex="-1">{move || t(lang.get(), Text::Outbox)}</h2>
            <DeclarationList only=None/>
        </section>
    }
}

/// The declarations made on this phone, newest first: of one meter, or of all.
#[component]
fn DeclarationList(only: Option<String>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let only = StoredValue::new(only);
    let shown = move || {
        let all = state.declarations.get();
        let only = only.get_value();
        all.into_iter()
            .filter(|d| d.state != State::Discarded && only.as_ref().is_none_or(|s| *s == d.subscription))
            .collect::<Vec<_>>()
    };
    view! {
        {move || shown().is_empty().then(|| view! { <p class="hint">{t(lang.get(), Text::NoDeclarations)}</p> })}
        <ul class="history">
            {move || shown().into_iter().map(|d| {
                let l = lang.get();
                let (class, label) = outcome_label(&d);
                // A reviewer's reason takes the place of the first outcome's message.
                let reason = d.review_reason.clone().or_else(|| d.message.clone());
                let sms = (d.state == State::Waiting).then(|| format!("sms:500025194?body={}", d.sms_body()));
                let taken = d.clone();
                view! {
                    <li class=format!("declaration {class}") data-id=d.id.to_string()>
                        <div>
                            <bdi>{number(l, &d.subscription)}</bdi> " · "
                            <strong><bdi>{number(l, &d.reading.to_string())}</bdi></strong> " · "
                            <bdi>{datetime(l, d.read_at)}</bdi>
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
                        {(d.tracking_code.is_none() && d.answered()).then(|| {
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
                        {reason.filter(|_| class != "accepted" && d.replaced_by.is_none())
                            .map(|m| view! { <div class="reason">{m}</div> })}
                        {correct_button(state, &d, l)}
                        {sms.map(|href| view! {
                            <div class="actions">
                                <a class="button-link" href=href>{t(l, Text::SendBySms)}</a>
                                <button class="link discard" disabled=move || state.syncing.get()
                                    on:click=move |_| retype(state, &taken)>{t(l, Text::Retype)}</button>
                            </div>
                        })}
                        {(d.refused_for_clock() && !crate::model::resent(&d, &state.declarations.get())).then(|| {
                            // The phone's clock was wrong, not the reading: one tap sends the
                            // same reading again, dated with the server's clock.
                            let refused = d.clone();
                            view! {
                                <button class="link resend" on:click=move |_| {
                                    let all = state.declarations.get_untracked();
                                    let again = refused.redated(sync::clock(state), now(), &all);
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
                                    state.last_saved.set(None);
                                    go(state, Screen::Declare);
                                }>{t(l, Text::CorrectAndResend)}</button>
                            }
                        })}
                    </li>
                }
            }).collect_view()}
        </ul>
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

/// Opens the complaint form to dispute one declaration, filled in.
fn dispute(state: AppState, subscription: &str, tracking_code: &str) {
    state.form_complaint_meter.set(subscription.to_owned());
    state.form_about.set(tracking_code.to_owned());
    state.form_kind.set(ComplaintKind::Dispute);
    go(state, Screen::Complaints);
}

#[component]
fn Complaints() -> impl IntoView {
    let state = expect_context::<AppState>();
    let lang = state.lang;
    let chosen = state.form_complaint_meter;
    let about = state.form_about;
    let kind = state.form_kind;
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
    let invalid = move || problem.get().is_some().then_some("true");
    view! {
        <section>
            <h2 tabindex="-1">{move || t(lang.get(), Text::Complaints)}</h2>
            <form id="complaint" on:submit=file>
                <label for="complaint_meter">{move || t(lang.get(), Text::Meter)}</label>
                <MeterChoice chosen=chosen id="complaint_meter"/>
                <label for="kind">{move || t(lang.get(), Text::Subject)}</label>
                <select id="kind" name="kind" on:change=set_kind
                    prop:value=move || if kind.get() == ComplaintKind::Service { "service" } else { "dispute" }>
                    <option value="dispute">{move || t(lang.get(), Text::KindDispute)}</option>
                    <option value="service">{move || t(lang.get(), Text::KindService)}</option>
                </select>
                <label for="about">{move || t(lang.get(), Text::About)}</label>
                <input id="about" name="about" inputmode="numeric" autocomplete="off" dir="ltr"
                    aria-describedby="complaint-problem" aria-invalid=invalid
                    prop:value=move || about.get() on:input=move |ev| about.set(event_target_value(&ev))/>
                <label for="complaint_text">{move || t(lang.get(), Text::Description)}</label>
                <textarea id="complaint_text" name="text" rows="3" maxlength="1000"
                    aria-describedby="complaint-problem" aria-invalid=invalid
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                <p class="problem" id="complaint-problem" role="alert">{move || problem.get()}</p>
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
