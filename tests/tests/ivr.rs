//! The phone channel: a test peer speaks FastAGI over TCP as Asterisk does (the `agi_*`
//! environment block, then one `200 result=` line per command, `HANGUP` when the caller hangs
//! up) for a whole call, wrong keys and time-outs, and a caller who hangs up midway. On SQLite and
//! on PostgreSQL.

use std::collections::VecDeque;

use server::store::Store as _;
use shared::TrackingCode;
use tests::{Backend, PHONE, SUB, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

tests::on_both_backends!(
    a_whole_call_stores_one_declaration,
    wrong_keys_and_silence_are_asked_again,
    hanging_up_before_the_last_confirmation_stores_nothing,
    too_many_failures_end_the_call,
    a_latin1_caller_name_and_leading_zeros,
    a_missing_sound_file_is_skipped_not_the_call,
    the_dialplan_names_the_script,
    one_channel_running_the_script_twice,
);

/// What the caller does at each `GET DATA`: keys, silence (`""`), or hanging up (`HANGUP`).
/// Answers every command the script sent.
async fn call(server: &TestServer, call_id: &str, caller: &str, keys: &[&str]) -> Vec<String> {
    call_named(server, call_id, caller, b"unknown", keys).await
}

/// [`call`] with the caller's name as Asterisk passes it: bytes, in whatever encoding the trunk
/// gave.
async fn call_named(server: &TestServer, call_id: &str, caller: &str, name: &[u8], keys: &[&str]) -> Vec<String> {
    call_with(server, &Peer { call_id, caller, name, script: "meter-reading", missing: &[] }, keys).await
}

/// How the Asterisk side of a call is set up.
struct Peer<'a> {
    call_id: &'a str,
    caller: &'a str,
    name: &'a [u8],
    /// `agi_network_script`.
    script: &'a str,
    /// Sound files this Asterisk does not have: `STREAM FILE` and `GET DATA` answer `-1` for
    /// them while the caller is still on the line, as Asterisk does.
    missing: &'a [&'a str],
}

async fn call_with(server: &TestServer, peer: &Peer<'_>, keys: &[&str]) -> Vec<String> {
    let Peer { call_id, caller, name, script, missing } = *peer;
    let is_missing = |command: &str| command.split_whitespace().nth(2).is_some_and(|file| missing.contains(&file));
    let stream = tokio::net::TcpStream::connect(server.agi).await.expect("connect to FastAGI");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut env = format!(
        "agi_network: yes\nagi_network_script: {script}\nagi_request: agi://127.0.0.1/{script}\n\
         agi_channel: SIP/trunk-00000001\nagi_language: fa\nagi_type: SIP\nagi_uniqueid: {call_id}\n\
         agi_callerid: {caller}\nagi_calleridname: "
    )
    .into_bytes();
    env.extend_from_slice(name);
    env.extend_from_slice(b"\nagi_context: from-trunk\nagi_extension: 3194\nagi_priority: 1\n\n");
    write.write_all(&env).await.expect("send the environment");
    let mut keys: VecDeque<&str> = keys.iter().copied().collect();
    let mut commands = Vec::new();
    while let Ok(Some(command)) = lines.next_line().await {
        commands.push(command.clone());
        let answer = if (command.starts_with("STREAM FILE") || command.starts_with("GET DATA")) && is_missing(&command)
        {
            if command.starts_with("STREAM FILE") { "200 result=-1 endpos=0" } else { "200 result=-1" }.to_owned()
        } else if command == "CHANNEL STATUS" {
            "200 result=6".to_owned()
        } else if command.starts_with("GET DATA") {
            match keys.pop_front() {
                Some("HANGUP") | None => {
                    let _ = write.write_all(b"HANGUP\n").await;
                    break;
                }
                Some("") => "200 result= (timeout)".to_owned(),
                Some(pressed) => format!("200 result={pressed}"),
            }
        } else if command.starts_with("STREAM FILE") {
            "200 result=0 endpos=8000".to_owned()
        } else if command == "HANGUP" {
            let _ = write.write_all(b"200 result=1\n").await;
            break;
        } else {
            "200 result=0".to_owned()
        };
        write.write_all(format!("{answer}\n").as_bytes()).await.expect("answer a command");
    }
    commands
}

fn played(commands: &[String], prompt: &str) -> usize {
    commands
        .iter()
        .filter(|c| c.starts_with(&format!("STREAM FILE {prompt} ")) || c.starts_with(&format!("GET DATA {prompt} ")))
        .count()
}

async fn a_whole_call_stores_one_declaration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let commands = call(&server, "1700000000.1", PHONE, &["1111222233", "1", "10087", "1"]).await;
    assert_eq!(commands.first().map(String::as_str), Some("ANSWER"));
    assert!(commands.contains(&"SAY DIGITS 1111222233 \"\"".to_owned()), "{commands:#?}");
    assert!(commands.contains(&"SAY DIGITS 10087 \"\"".to_owned()), "{commands:#?}");
    assert_eq!(played(&commands, "kontor/outcome-accepted"), 1, "{commands:#?}");
    let said: Vec<&String> = commands.iter().filter(|c| c.starts_with("SAY DIGITS")).collect();
    let code = said.last().and_then(|c| c.split_whitespace().nth(2)).expect("the tracking code is said");
    assert!(TrackingCode::parse(code).is_some(), "{code}");
    assert_eq!(commands.last().map(String::as_str), Some("HANGUP"));
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].reading, stored[0].consumption_m3), (Some(10_087), Some(87)));
    server.finish().await;
}

async fn wrong_keys_and_silence_are_asked_again(backend: Backend) {
    let server = TestServer::start(backend).await;
    let keys = ["", "12", "1111222233", "9", "2", "1111222233", "1", "10087", "1"];
    let commands = call(&server, "1700000000.2", PHONE, &keys).await;
    assert_eq!(played(&commands, "kontor/no-input"), 1, "{commands:#?}");
    assert_eq!(played(&commands, "kontor/invalid-subscription"), 1, "{commands:#?}");
    assert_eq!(played(&commands, "kontor/enter-subscription"), 4, "{commands:#?}");
    assert_eq!(played(&commands, "kontor/outcome-accepted"), 1, "{commands:#?}");
    assert_eq!(server.stored().await, 1);
    server.finish().await;
}

async fn hanging_up_before_the_last_confirmation_stores_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let commands = call(&server, "1700000000.3", PHONE, &["1111222233", "1", "10087", "HANGUP"]).await;
    assert_eq!(played(&commands, "kontor/outcome-accepted"), 0);
    // Another whole call afterwards is the only declaration stored.
    call(&server, "1700000000.4", PHONE, &["1111222233", "1", "10090", "1"]).await;
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.iter().map(|d| d.reading).collect::<Vec<_>>(), [Some(10_090)]);
    server.finish().await;
}

async fn too_many_failures_end_the_call(backend: Backend) {
    let server = TestServer::start(backend).await;
    let commands = call(&server, "1700000000.5", "09350000000", &["", "", ""]).await;
    assert_eq!(played(&commands, "kontor/no-input"), 3, "{commands:#?}");
    assert_eq!(played(&commands, "kontor/goodbye"), 1, "{commands:#?}");
    assert_eq!(commands.last().map(String::as_str), Some("HANGUP"));
    assert_eq!(server.stored().await, 0);
    server.finish().await;
}

/// A trunk that passes the caller's name in Latin-1 does not drop the call, and a reading with
/// leading zeros is read back as keyed.
async fn a_latin1_caller_name_and_leading_zeros(backend: Backend) {
    let server = TestServer::start(backend).await;
    let commands =
        call_named(&server, "1700000000.9", PHONE, b"Jos\xe9", &["1111222233", "1", "00188", "HANGUP"]).await;
    assert_eq!(commands.first().map(String::as_str), Some("ANSWER"), "{commands:#?}");
    assert!(commands.contains(&"SAY DIGITS 00188 \"\"".to_owned()), "{commands:#?}");
    assert_eq!(server.stored().await, 0, "hung up before confirming");
    server.finish().await;
}

/// An Asterisk without some of the sound files (the greeting, a question, a reason): each is
/// skipped with a warning after the channel is found still up, the keys are still collected, and
/// the caller still hears the tracking code.
async fn a_missing_sound_file_is_skipped_not_the_call(backend: Backend) {
    let server = TestServer::start(backend).await;
    let missing = ["kontor/welcome", "kontor/enter-subscription", "kontor/reason-unverified_sender"];
    let peer =
        Peer { call_id: "1700000001.1", caller: "09350000000", name: b"x", script: "meter-reading", missing: &missing };
    let commands = call_with(&server, &peer, &["1111222233", "1", "10087", "1"]).await;
    assert!(commands.iter().any(|c| c == "CHANNEL STATUS"), "{commands:#?}");
    assert!(commands.iter().any(|c| c.starts_with("GET DATA silence/1 ")), "keys collected without the prompt");
    assert_eq!(played(&commands, "kontor/outcome-review"), 1, "{commands:#?}");
    assert_eq!(played(&commands, "kontor/tracking-code"), 1, "{commands:#?}");
    assert_eq!(commands.last().map(String::as_str), Some("HANGUP"));
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.iter().map(|d| d.reading).collect::<Vec<_>>(), [Some(10_087)]);
    server.finish().await;
}

/// A dialplan that asks for another script is hung up on at once; nothing is asked or stored.
async fn the_dialplan_names_the_script(backend: Backend) {
    let server = TestServer::start(backend).await;
    let peer = Peer { call_id: "1700000001.2", caller: PHONE, name: b"x", script: "billing-enquiry", missing: &[] };
    let commands = call_with(&server, &peer, &["1111222233", "1", "10087", "1"]).await;
    assert_eq!(commands, ["HANGUP"]);
    assert_eq!(server.stored().await, 0);
    server.finish().await;
}

/// Asterisk keeps a channel's unique id when the dialplan runs the script again: a second reading
/// on that channel is its own declaration, the same reading again is the same one.
async fn one_channel_running_the_script_twice(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The caller misread the meter and calls the script again at once: the lower reading is held
    // for review rather than refused as an id conflict; keyed a third time, it is the same one.
    for (reading, outcome) in
        [("10087", "kontor/outcome-accepted"), ("10080", "kontor/outcome-review"), ("10080", "kontor/outcome-review")]
    {
        let commands = call(&server, "1700000001.3", PHONE, &["1111222233", "1", reading, "1"]).await;
        assert_eq!(played(&commands, outcome), 1, "{reading}: {commands:#?}");
    }
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.iter().map(|d| d.reading).collect::<Vec<_>>(), [Some(10_087), Some(10_080)]);
    server.finish().await;
}
