//! Complaints and disputes: filed over the API as the web app queues them (and at a counter
//! office), answered by staff in the console, and the answers and review decisions handed back
//! through `POST /api/v1/updates`. On SQLite and on PostgreSQL.

use serde_json::{Value, json};
use server::store::{Role, Store as _};
use shared::{ComplaintNumber, TrackingCode};
use tests::{Backend, ConsoleClient, SERIAL, SUB, TestServer, submission};
use uuid::Uuid;

tests::on_both_backends!(
    a_complaint_sent_from_the_app_gets_its_answer_back,
    an_office_files_a_complaint_for_a_citizen,
    a_complaint_needs_proof_of_the_meter,
    a_complaint_names_its_reading_by_the_phones_receipt,
    a_phone_sends_its_queued_complaints_together,
);

const PASSWORD: &str = "correct horse battery";

fn complaint(id: Uuid, about: Option<&str>, text: &str) -> Value {
    json!({"id": id, "subscription": SUB, "meter_serial": SERIAL, "kind": "dispute", "about": about, "text": text,
        "made_at": "2026-11-26T10:00:00+03:30"})
}

async fn file(server: &TestServer, complaints: Vec<Value>) -> Vec<Value> {
    let (status, body) =
        server.post("/api/v1/complaints", &json!({"device_id": Uuid::new_v4(), "complaints": complaints})).await;
    assert_eq!(status, 200, "{body}");
    body["results"].as_array().expect("results").clone()
}

async fn updates(server: &TestServer, declarations: &[Uuid], complaints: &[Uuid]) -> Value {
    let body = json!({"device_id": Uuid::new_v4(), "declarations": declarations, "complaints": complaints});
    let (status, body) = server.post("/api/v1/updates", &body).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn signed_in(server: &TestServer, username: &str, role: Role, office: &str) -> ConsoleClient {
    server.add_operator(username, role, office, PASSWORD).await;
    let console = server.console();
    assert_eq!(console.login(username, PASSWORD).await.status, 303);
    console
}

async fn a_complaint_sent_from_the_app_gets_its_answer_back(backend: Backend) {
    let server = TestServer::start(backend).await;
    // A reading that counts, one held for review, and one the reviewer will turn down.
    let (ok, held, doubtful) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let results = server
        .sync(vec![
            submission(ok, 10_050, &server.hours_ago(24 * 20)),
            submission(held, 10_400, &server.hours_ago(24 * 10)),
        ])
        .await;
    assert_eq!(results[1]["status"], "needs_review");
    let code = results[0]["tracking_code"].as_str().expect("a tracking code").to_owned();
    let later = server.sync(vec![submission(doubtful, 10_000, &server.hours_ago(24))]).await;
    assert_eq!(later[0]["code"], "reading_decreased");

    // The subscriber disputes the first reading, quoting its code in Persian digits.
    let id = Uuid::now_v7();
    let quoted = shared::digits::to_persian_digits(&code);
    let text = "رقم کنتور من ۱۰۰۳۰ بود، نه ۱۰۰۵۰.";
    let first = file(&server, vec![complaint(id, Some(&quoted), text)]).await;
    assert_eq!(first[0]["status"], "received", "{first:?}");
    let number = first[0]["complaint_number"].as_str().expect("a complaint number").to_owned();
    assert_eq!(number.len(), 8);
    assert!(ComplaintNumber::parse(&number).is_some() && TrackingCode::parse(&number).is_none());

    // Sent again after a lost response: the same number, nothing new.
    let again = file(&server, vec![complaint(id, Some(&quoted), text)]).await;
    assert_eq!(
        (again[0]["complaint_number"].as_str(), again[0]["replayed"].as_bool()),
        (Some(number.as_str()), Some(true))
    );
    // Mistakes a person can fix are refused, each with its reason; the rest of the batch goes on.
    let mut typo = code.clone().into_bytes();
    typo[2] = if typo[2] == b'9' { b'0' } else { typo[2] + 1 };
    let typo = String::from_utf8(typo).expect("digits");
    let mut unknown = complaint(Uuid::now_v7(), None, "x");
    unknown["subscription"] = json!("9999999999");
    let refused = file(
        &server,
        vec![
            complaint(id, Some(&quoted), "another text under the same id"),
            complaint(Uuid::now_v7(), Some(&typo), text),
            unknown,
            complaint(Uuid::now_v7(), None, "   "),
            complaint(Uuid::now_v7(), None, "the service is slow"),
        ],
    )
    .await;
    let codes: Vec<Option<&str>> = refused.iter().map(|r| r["code"].as_str()).collect();
    assert_eq!(
        codes,
        [Some("id_conflict"), Some("tracking_code_invalid"), Some("identity_mismatch"), Some("text_length"), None]
    );
    assert_eq!(refused[4]["status"], "received");
    let (status, _) = server.post("/api/v1/complaints", &json!({"device_id": Uuid::new_v4(), "complaints": []})).await;
    assert_eq!(status, 400);

    // Nothing has happened yet.
    let news = updates(&server, &[held, doubtful], &[id]).await;
    assert_eq!(
        (news["decisions"].as_array().map(Vec::len), news["answers"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );

    // Staff answer it in the console, with the disputed reading in front of them, and decide the
    // held readings.
    let staff = signed_in(&server, "rev", Role::Reviewer, "Customer care").await;
    let list = staff.get("/office/complaints").await;
    let seq = ComplaintNumber::parse(&number).and_then(|n| n.sequence()).expect("a sequence");
    assert!(list.body.contains(&format!("/office/complaints/{seq}\"")), "listed as open");
    let page = staff.get(&format!("/office/complaints/{seq}")).await;
    assert!(page.body.contains(&shared::digits::to_persian_digits("10050")), "the disputed reading is shown");
    let csrf = page.field("csrf").expect("csrf");
    let answer = "رقم دوباره خوانده شد و اصلاح می‌شود.";
    let answered = staff.post(&format!("/office/complaints/{seq}"), &[("csrf", &csrf), ("answer", answer)]).await;
    assert_eq!(answered.status, 303, "{}", answered.body);
    let twice = staff.post(&format!("/office/complaints/{seq}"), &[("csrf", &csrf), ("answer", "again")]).await;
    assert_eq!(twice.status, 409);
    for (id, decision, reason) in [(held, "approve", ""), (doubtful, "reject", "the meter was read at 10,450 on site")]
    {
        let stored = server.store.declaration_by_id(id).await.expect("read").expect("stored");
        let path = format!("/office/review/{}", stored.seq);
        let decided = staff.post(&path, &[("csrf", &csrf), ("decision", decision), ("reason", reason)]).await;
        assert_eq!(decided.status, 303, "{}", decided.body);
    }

    // At its next sync the app learns all three.
    let news = updates(&server, &[held, doubtful, ok], &[id]).await;
    let answers = news["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 1);
    assert_eq!(
        (answers[0]["complaint_number"].as_str(), answers[0]["answer"].as_str()),
        (Some(number.as_str()), Some(answer))
    );
    let decisions = news["decisions"].as_array().expect("decisions");
    let of = |id: Uuid| decisions.iter().find(|d| d["id"] == json!(id)).cloned().unwrap_or(Value::Null);
    assert_eq!(decisions.len(), 2, "only the decided ones: {decisions:?}");
    assert_eq!(of(held)["status"], "accepted");
    assert_eq!(
        (of(doubtful)["status"].as_str(), of(doubtful)["reason"].as_str()),
        (Some("rejected"), Some("the meter was read at 10,450 on site"))
    );
    let log = server.store.audit_log(None, 50).await.expect("audit");
    assert!(log.iter().any(|r| r.action == "complaint_answer" && r.username == "rev"));
    server.finish().await;
}

async fn an_office_files_a_complaint_for_a_citizen(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clerk = signed_in(&server, "clerk", Role::Office, "Pishkhan 12").await;
    let form = clerk.get("/office/complaints/new").await;
    let (csrf, id) = (form.field("csrf").expect("csrf"), form.field("id").expect("id"));
    let base = [("csrf", csrf.as_str()), ("id", id.as_str()), ("subscription", "۱۱۱۱۲۲۲۲۳۳"), ("kind", "service")];
    let mut fields = base.to_vec();
    fields.extend([("about", "12345"), ("text", "مأمور قرائت سه ماه است نیامده.")]);
    let mistyped = clerk.post("/office/complaints/new", &fields).await;
    assert_eq!(mistyped.status, 422, "a code that fails its check digit is sent back");
    fields[4] = ("about", "");
    let filed = clerk.post("/office/complaints/new", &fields).await;
    assert_eq!(filed.status, 303, "{}", filed.body);
    let location = filed.location.expect("to the complaint");
    let page = clerk.get(&location).await;
    let stored = server.store.open_complaints(10).await.expect("read");
    assert_eq!(stored.len(), 1);
    let staff = stored[0].staff.as_ref().expect("the operator is recorded");
    assert_eq!(
        (staff.operator.as_str(), staff.office.as_str(), stored[0].channel.as_str()),
        ("clerk", "Pishkhan 12", "office")
    );
    let number = stored[0].number().expect("a number");
    assert!(page.body.contains(&shared::digits::to_persian_digits(number.as_str())), "the number to hand over");
    // A double click is one complaint.
    assert_eq!(clerk.post("/office/complaints/new", &fields).await.location.as_deref(), Some(location.as_str()));
    assert_eq!(server.store.open_complaints(10).await.expect("read").len(), 1);
    // Another office does not see it; staff who answer do.
    let other = signed_in(&server, "clerk2", Role::Office, "Pishkhan 40").await;
    assert_eq!(other.get(&location).await.status, 404);
    let rev = signed_in(&server, "rev", Role::Reviewer, "Customer care").await;
    assert_eq!(rev.get(&location).await.status, 200);
    assert!(server.store.audit_log(None, 50).await.expect("audit").iter().any(|r| r.action == "complaint_filed"));
    server.finish().await;
}

/// Anyone could file in anyone's name: a complaint must prove its meter (the serial, or the device
/// token from verify), the answer does not tell a wrong serial from an unknown subscription, and
/// the failures count against the identity limits.
async fn a_complaint_needs_proof_of_the_meter(backend: Backend) {
    let server = TestServer::start(backend).await;
    let with = |subscription: &str, serial: Option<&str>| {
        let mut c = complaint(Uuid::now_v7(), None, "my bill is too high");
        c["subscription"] = json!(subscription);
        c["meter_serial"] = json!(serial);
        c
    };
    let results = file(
        &server,
        vec![with(SUB, None), with(SUB, Some("ZZ999999")), with("9999999999", Some(SERIAL)), with(SUB, Some(SERIAL))],
    )
    .await;
    let said: Vec<(Option<&str>, Option<&str>)> =
        results.iter().map(|r| (r["code"].as_str(), r["message"].as_str())).collect();
    assert_eq!(said[0].0, Some("identity_mismatch"));
    assert_eq!(said[0], said[1], "no serial and a wrong serial are answered alike");
    assert_eq!(said[1], said[2], "an unknown subscription is answered like a wrong serial");
    assert_eq!(results[3]["status"], "received", "with the serial it is received");

    // The device token from verify proves the meter without the serial.
    let (status, verified) = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": SUB, "meter_serial": SERIAL, "device_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    let token = verified["device_token"].as_str().expect("a device token");
    let body = json!({"device_id": Uuid::new_v4(), "complaints": [with(SUB, None)]});
    let answer = server
        .http
        .post(format!("{}/api/v1/complaints", server.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.expect("json");
    assert_eq!(answer["results"][0]["status"], "received", "{answer}");

    // Two failures so far for this subscription; three more guesses (three serials: the same
    // wrong claim sent three times is one) reach its limit of five, and then even a proven
    // complaint for it waits.
    file(&server, vec![with(SUB, Some("GS000001")), with(SUB, Some("GS000002")), with(SUB, Some("GS000003"))]).await;
    let body = json!({"device_id": Uuid::new_v4(), "complaints": [with(SUB, Some(SERIAL))]});
    let (status, _) = server.post("/api/v1/complaints", &body).await;
    assert_eq!(status, 429, "guessing is limited");
    server.finish().await;
}

async fn a_complaint_names_its_reading_by_the_phones_receipt(backend: Backend) {
    let server = TestServer::start(backend).await;
    let id = Uuid::now_v7();
    let synced = server.sync(vec![submission(id, 10_050, &server.hours_ago(24))]).await;
    let tracking = synced[0]["tracking_code"].as_str().expect("a tracking code").to_owned();
    let seq = TrackingCode::parse(&tracking).and_then(|c| c.sequence()).expect("a sequence");
    // The subscriber kept the receipt the phone showed, and types it in Persian digits.
    let receipt = shared::Receipt::of(id);
    let typed = shared::digits::to_persian_digits(receipt.as_str());
    let filed = file(&server, vec![complaint(Uuid::now_v7(), Some(&typed), "رقم درست نیست")]).await;
    assert_eq!(filed[0]["status"], "received", "{filed:?}");
    let number = filed[0]["complaint_number"].as_str().expect("a number");
    let stored = server
        .store
        .complaint(ComplaintNumber::parse(number).and_then(|n| n.sequence()).expect("a sequence"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.about_seq, Some(seq), "the receipt names the declaration it was shown for");

    // A receipt of no declaration here (one still on a phone, or another subscription's), and
    // a receipt with a typo, are refused the same way as a wrong tracking code.
    let elsewhere = shared::Receipt::of(Uuid::now_v7());
    let mut typo = receipt.to_string().into_bytes();
    typo[0] = if typo[0] == b'9' { b'0' } else { typo[0] + 1 };
    let typo = String::from_utf8(typo).expect("digits");
    let refused = file(
        &server,
        vec![complaint(Uuid::now_v7(), Some(elsewhere.as_str()), "x"), complaint(Uuid::now_v7(), Some(&typo), "x")],
    )
    .await;
    assert!(refused.iter().all(|r| r["code"] == "tracking_code_invalid"), "{refused:?}");
    server.finish().await;
}

async fn a_phone_sends_its_queued_complaints_together(backend: Backend) {
    let server = TestServer::start(backend).await;
    // More complaints about one meter than its failure limit, each proving it by its serial: one
    // claim of one meter, not one guess per complaint.
    let queued: Vec<Value> = (0..8).map(|n| complaint(Uuid::now_v7(), None, &format!("complaint {n}"))).collect();
    let results = file(&server, queued).await;
    assert!(results.iter().all(|r| r["status"] == "received"), "{results:?}");
    server.finish().await;
}
