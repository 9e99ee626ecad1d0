//! Guessing in parallel, as an attacker does it rather than one request at a time: hundreds of
//! serial guesses, sign-ins and billing tokens fired together get no more answers than the limits
//! allow; a phone that holds its device token is never locked out by them; behind a trusted proxy
//! each client is its own, and nobody else's header is believed. Loopback only, bounded; on
//! SQLite and on PostgreSQL. Each test prints what it measured.

use std::time::Instant;

use serde_json::{Value, json};
use server::store::{Role, Store as _};
use tests::{Backend, SERIAL, SUB, TestServer};
use uuid::Uuid;

tests::on_both_backends!(
    parallel_serial_guesses_meet_the_limit,
    parallel_sign_ins_meet_the_limit,
    parallel_billing_tokens_meet_the_limit,
    behind_a_trusted_proxy_each_client_is_its_own,
    an_owner_who_mistyped_waits_a_moment_not_a_quarter_hour,
    a_trusted_browser_signs_in_through_a_guessing_attack,
);

/// Guesses fired together in each test: well past every limit.
const BURST: usize = 200;

async fn verify(server: &TestServer, serial: &str, forwarded_for: Option<&str>) -> (u16, Value) {
    let mut request = server.http.post(format!("{}/api/v1/meters/verify", server.base)).json(&json!({
        "subscription": SUB, "meter_serial": serial, "device_id": Uuid::new_v4(),
    }));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// How many of the answers had each status, as (status, count), sorted.
fn tally(statuses: impl IntoIterator<Item = u16>) -> Vec<(u16, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

async fn parallel_serial_guesses_meet_the_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The subscriber's phone verified its meter before the attack.
    let (status, body) = verify(&server, SERIAL, None).await;
    assert_eq!(status, 200, "{body}");
    let token = body["device_token"].as_str().expect("a token").to_owned();

    let started = Instant::now();
    let guesses = (0..BURST).map(|n| {
        let server = &server;
        async move { verify(server, &format!("GS{n:06}"), None).await.0 }
    });
    let statuses = futures_join_all(guesses).await;
    let took = started.elapsed();
    let counts = tally(statuses.iter().copied());
    println!("{BURST} parallel serial guesses in {took:?}: {counts:?}");
    let answered = statuses.iter().filter(|&&s| s == 404).count();
    assert!(answered <= 5, "{answered} guesses were answered against a limit of 5: {counts:?}");
    assert_eq!(answered + statuses.iter().filter(|&&s| s == 429).count(), BURST, "{counts:?}");

    // Even the right serial waits now: the subscription is locked for guessers.
    assert_eq!(verify(&server, SERIAL, None).await.0, 429);
    // One batch of guesses is refused whole.
    let batch: Vec<Value> = (0..50)
        .map(|n| {
            json!({"id": Uuid::new_v4(), "subscription": "4444555566", "meter_serial": format!("GB{n:06}"),
                   "reading": 99_950, "read_at": server.hours_ago(1)})
        })
        .collect();
    let (status, _) = server.post("/api/v1/sync", &json!({"device_id": Uuid::new_v4(), "submissions": batch})).await;
    assert_eq!(status, 429);
    // The phone with its token is not locked out, on its address or its subscription.
    let response = server
        .http
        .post(format!("{}/api/v1/sync", server.base))
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"device_id": Uuid::new_v4(), "submissions": [
            {"id": Uuid::new_v4(), "subscription": SUB, "meter_serial": SERIAL, "reading": 10_020,
             "read_at": server.hours_ago(1)}]}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    server.finish().await;
}

async fn parallel_sign_ins_meet_the_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_operator("rev", Role::Reviewer, "Billing", "correct horse battery").await;
    let started = Instant::now();
    let tries = (0..60).map(|n| {
        let server = &server;
        async move { server.console().login("rev", &format!("wrong password {n}")).await.status }
    });
    let statuses = futures_join_all(tries).await;
    let counts = tally(statuses.iter().copied());
    println!("60 parallel wrong sign-ins in {:?}: {counts:?}", started.elapsed());
    let answered = statuses.iter().filter(|&&s| s == 401).count();
    assert!(answered <= 5, "{answered} wrong passwords were checked against a limit of 5: {counts:?}");
    // The right password is refused too until the wait is over: a guesser cannot tell.
    assert_eq!(server.console().login("rev", "correct horse battery").await.status, 429);
    let audit = server.store.audit_log(None, 200).await.expect("audit");
    assert_eq!(audit.iter().filter(|r| r.action == "login_failed").count(), answered);
    server.finish().await;
}

async fn parallel_billing_tokens_meet_the_limit(backend: Backend) {
    const TOKEN: &str = "billing-abuse-token-0123456789abcdef";
    let server = TestServer::start_with(backend, |o| o.billing_token = Some(TOKEN.into())).await;
    let tries = (0..BURST).map(|n| {
        let server = &server;
        async move {
            let response = server
                .http
                .get(format!("{}/api/v1/billing/readings", server.base))
                .header("authorization", format!("Bearer guess-{n}"))
                .send()
                .await
                .expect("an answer");
            response.status().as_u16()
        }
    });
    let statuses = futures_join_all(tries).await;
    let counts = tally(statuses.iter().copied());
    println!("{BURST} parallel wrong billing tokens: {counts:?}");
    let answered = statuses.iter().filter(|&&s| s == 401).count();
    assert!(answered <= 20, "{answered} wrong tokens were answered against a limit of 20: {counts:?}");
    let audit = server.store.audit_log(None, 500).await.expect("audit");
    assert_eq!(audit.iter().filter(|r| r.action == "token_failed").count(), answered, "each failure is audited");

    // A token too short to be safe stops the server at start.
    let weak = server::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        server.store.clone(),
        server::ServeOptions { billing_token: Some("short".into()), ..server::ServeOptions::default() },
        async {},
    )
    .await;
    assert!(weak.is_err_and(|e| e.to_string().contains("too weak")));
    server.finish().await;
}

/// Sixty wrong passwords for `rev` fired together, each from a browser `from` makes: the tally
/// of the answers.
async fn wrong_sign_ins(from: impl Fn() -> tests::ConsoleClient) -> Vec<(u16, usize)> {
    let clients: Vec<_> = (0..60).map(|_| from()).collect();
    let tries = clients
        .iter()
        .enumerate()
        .map(|(n, console)| async move { console.login("rev", &format!("wrong password {n}")).await.status });
    tally(futures_join_all(tries).await)
}

/// A staff member's own browser, trusted since they last signed in there, is not locked out by
/// someone guessing their password elsewhere; a new browser is, and so is a stolen cookie used
/// for guessing.
async fn a_trusted_browser_signs_in_through_a_guessing_attack(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_operator("rev", Role::Reviewer, "Billing", "correct horse battery").await;
    let desk = server.console();
    let first = desk.login("rev", "correct horse battery").await;
    assert_eq!(first.status, 303);
    let trust = first.set_cookies.iter().find(|c| c.starts_with("kontor_office_browser=")).expect("a browser cookie");
    assert!(trust.contains("HttpOnly") && trust.contains("SameSite=Strict"), "{trust}");
    let csrf = desk.csrf("/office/").await;
    assert_eq!(desk.post("/office/logout", &[("csrf", &csrf)]).await.status, 303);

    // The attack: sixty wrong passwords for `rev` from sixty fresh browsers.
    let counts = wrong_sign_ins(|| server.console()).await;
    println!("60 parallel wrong sign-ins from new browsers: {counts:?}");
    let answered = counts.iter().filter(|(s, _)| *s == 401).map(|(_, n)| n).sum::<usize>();
    assert!(answered <= 5, "{counts:?}");
    assert_eq!(server.console().login("rev", "correct horse battery").await.status, 429, "a new browser waits");
    // The desk's browser is let in at once.
    let back = desk.login("rev", "correct horse battery").await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(
        !back.set_cookies.iter().any(|c| c.starts_with("kontor_office_browser=")),
        "the trust is kept, not renewed"
    );
    let csrf = desk.csrf("/office/").await;
    assert_eq!(desk.post("/office/logout", &[("csrf", &csrf)]).await.status, 303);

    // The cookie is worth the username's allowance to a thief, no more.
    let jar = desk.cookie_value("kontor_office_browser").expect("the desk keeps its cookie");
    let counts = wrong_sign_ins(|| {
        let thief = server.console();
        thief.set_cookie("kontor_office_browser", &jar);
        thief
    })
    .await;
    println!("60 parallel wrong sign-ins with a stolen browser cookie: {counts:?}");
    let answered = counts.iter().filter(|(s, _)| *s == 401).map(|(_, n)| n).sum::<usize>();
    assert!(answered <= 5, "{counts:?}");
    assert_eq!(desk.login("rev", "correct horse battery").await.status, 429, "the guessed-with browser waits too");
    let audit = server.store.audit_log(None, 200).await.expect("audit");
    let trusted =
        audit.iter().filter(|r| r.action == "login_failed" && r.detail.ends_with("(trusted browser)")).count();
    assert_eq!(trusted, answered, "each checked guess is in the audit log, marked as from a trusted browser");
    server.finish().await;
}

/// Past the free tries the waits grow (here from 400 ms, where a real server starts at 30 s):
/// the owner who mistyped is served after the first wait, a guesser meets longer ones.
async fn an_owner_who_mistyped_waits_a_moment_not_a_quarter_hour(backend: Backend) {
    use std::time::Duration;
    let server = TestServer::start_with(backend, |o| {
        o.limits.first_delay = Duration::from_millis(400);
    })
    .await;
    for n in 0..5 {
        assert_eq!(verify(&server, &format!("TS00000{n}X"), None).await.0, 404, "free try {n}");
    }
    let refused = server
        .http
        .post(format!("{}/api/v1/meters/verify", server.base))
        .json(&json!({"subscription": SUB, "meter_serial": SERIAL, "device_id": Uuid::new_v4()}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1", "the first wait, rounded up to a second");
    tokio::time::sleep(Duration::from_millis(450)).await;
    // One more wrong try after the wait is answered; the next wait is twice as long.
    assert_eq!(verify(&server, "TS0000WRONG", None).await.0, 404);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(verify(&server, SERIAL, None).await.0, 429, "800 ms after the sixth failure, not 400");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = verify(&server, SERIAL, None).await;
    assert_eq!(status, 200, "the owner's right serial: {body}");
    server.finish().await;
}

async fn verify_other(server: &TestServer, subscription: &str, forwarded_for: &str) -> u16 {
    let body = json!({"subscription": subscription, "meter_serial": "XX0001", "device_id": Uuid::new_v4()});
    let response = server
        .http
        .post(format!("{}/api/v1/meters/verify", server.base))
        .header("x-forwarded-for", forwarded_for)
        .json(&body)
        .send()
        .await
        .expect("an answer");
    response.status().as_u16()
}

async fn behind_a_trusted_proxy_each_client_is_its_own(backend: Backend) {
    let proxied =
        TestServer::start_with(backend, |o| o.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    // Twenty-five people behind the proxy each mistype their subscription once: each is answered.
    for n in 0..25 {
        assert_eq!(verify_other(&proxied, &format!("55555{n:05}"), &format!("203.0.113.{n}")).await, 404);
    }
    // One client behind the proxy guessing is stopped at its own limit.
    let mut answered = 0;
    for n in 0..25 {
        if verify_other(&proxied, &format!("66666{n:05}"), "203.0.113.200").await == 404 {
            answered += 1;
        }
    }
    assert_eq!(answered, 20, "the guesser's own limit");
    // And everyone else behind the same proxy is served.
    assert_eq!(
        verify(&proxied, SERIAL, Some("198.51.100.7")).await.0,
        200,
        "one client's mistakes lock out nobody else"
    );
    proxied.finish().await;

    // Without --trusted-proxies the header is anyone's to write, and ignored: one address with
    // any number of made-up clients meets one limit.
    let direct = TestServer::start(backend).await;
    for n in 0..25 {
        let _ = verify_other(&direct, &format!("55555{n:05}"), &format!("203.0.113.{n}")).await;
    }
    assert_eq!(verify(&direct, SERIAL, Some("198.51.100.9")).await.0, 429, "a forged header changed nothing");
    direct.finish().await;
}

/// Runs the futures together on this task (no spawn: they borrow the server).
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
