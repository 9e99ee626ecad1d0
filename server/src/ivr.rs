//! The phone channel: a FastAGI service that an Asterisk or Issabel dialplan sends a call to
//! (`AGI(agi://HOST:4573/meter-reading)`).
//!
//! The caller keys in the subscription code and the reading, hears each back and confirms, and
//! hears the outcome and the tracking code digit by digit. Prompts are sound files under
//! `kontor/` (listed by [`PROMPTS`]) so the company can record them in Persian. The caller's
//! number plays the role of an SMS sender's; the call's unique id makes the declaration's id, and
//! nothing is stored before the last confirmation.

use std::collections::HashMap;
use std::time::Duration;

use shared::sms::SmsDeclaration;
use shared::{Code, Reading, Status, SubscriptionNumber, TrackingCode};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::store::{Channel, Incoming, PhoneDeclaration};
use crate::writer::Writer;

/// The default FastAGI port.
pub const DEFAULT_PORT: u16 = 4573;
/// How many times a caller may time out or press a wrong key at one step.
const MAX_TRIES: u32 = 3;
/// How long Asterisk waits for the caller's keys, in milliseconds.
const INPUT_TIMEOUT_MS: u32 = 10_000;
/// How long this side waits for Asterisk to answer one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Every sound file the call plays, with what it should say, for the recording studio.
pub const PROMPTS: &[(&str, &str)] = &[
    ("kontor/welcome", "Welcome to the meter-reading line of the gas company."),
    ("kontor/enter-subscription", "Key in your subscription code, then press the hash key."),
    ("kontor/enter-reading", "Key in the black digits of your meter, then press the hash key."),
    ("kontor/you-entered", "You entered:"),
    ("kontor/confirm", "If this is right, press 1; to enter it again, press 2."),
    ("kontor/no-input", "We did not receive any keys."),
    ("kontor/invalid-subscription", "That is not a valid subscription code."),
    ("kontor/invalid-reading", "That is not a valid reading."),
    ("kontor/outcome-accepted", "Your reading has been recorded."),
    ("kontor/outcome-review", "Your reading has been recorded and will be checked by our staff."),
    ("kontor/outcome-rejected", "Your reading could not be accepted."),
    ("kontor/tracking-code", "Your tracking code is:"),
    ("kontor/try-later", "The service is busy; please call again later."),
    ("kontor/goodbye", "Thank you. Goodbye."),
];

/// The extra prompt that explains a code, e.g. `kontor/reason-identity_mismatch`.
pub fn reason_prompt(code: Code) -> String {
    format!("kontor/reason-{}", code.as_str())
}

/// Why a call ended early.
#[derive(Debug, thiserror::Error)]
pub enum AgiError {
    #[error("the caller hung up")]
    Hangup,
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("Asterisk did not answer in time")]
    Timeout,
    #[error("unexpected answer from Asterisk: {0:?}")]
    Protocol(String),
}

/// One FastAGI conversation over a TCP connection.
pub struct AgiSession {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The `agi_*` variables Asterisk sent first, without the prefix.
    pub env: HashMap<String, String>,
}

impl AgiSession {
    /// Reads the environment block that opens every FastAGI connection.
    pub async fn start(stream: TcpStream) -> Result<Self, AgiError> {
        let (read, writer) = stream.into_split();
        let mut session = Self { reader: BufReader::new(read), writer, env: HashMap::new() };
        loop {
            let line = session.read_line().await?;
            if line.is_empty() {
                break;
            }
            if let Some((key, value)) = line.split_once(':') {
                let key = key.trim().trim_start_matches("agi_").to_owned();
                session.env.insert(key, value.trim().to_owned());
            }
            if session.env.len() > 200 {
                return Err(AgiError::Protocol("environment block too long".into()));
            }
        }
        Ok(session)
    }

    /// One line from Asterisk. Bytes that are not UTF-8 (a caller name in Latin-1, say) are
    /// replaced rather than ending the call.
    async fn read_line(&mut self) -> Result<String, AgiError> {
        let mut line = Vec::new();
        let read =
            tokio::time::timeout(COMMAND_TIMEOUT, (&mut self.reader).take(8 * 1024).read_until(b'\n', &mut line))
                .await
                .map_err(|_| AgiError::Timeout)??;
        if read == 0 {
            return Err(AgiError::Hangup);
        }
        Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Sends a command and answers the `result=` value of its `200` reply.
    pub async fn command(&mut self, command: &str) -> Result<String, AgiError> {
        self.writer.write_all(format!("{command}\n").as_bytes()).await?;
        loop {
            let line = self.read_line().await?;
            // Asterisk tells a FastAGI script of a hang-up with a bare HANGUP line.
            if line == "HANGUP" {
                return Err(AgiError::Hangup);
            }
            if line.starts_with("511") {
                return Err(AgiError::Hangup);
            }
            if let Some(rest) = line.strip_prefix("200 ") {
                let result = rest.strip_prefix("result=").unwrap_or("");
                let value = result.split_whitespace().next().unwrap_or("");
                if value == "-1" {
                    return Err(AgiError::Hangup);
                }
                // "result= (timeout)" has an empty value.
                return Ok(if result.starts_with(' ') || result.starts_with('(') {
                    String::new()
                } else {
                    value.to_owned()
                });
            }
            if line.starts_with('5') || line.starts_with('4') {
                return Err(AgiError::Protocol(line));
            }
            // Anything else (a usage text's continuation lines) is skipped.
        }
    }

    async fn play(&mut self, prompt: &str) -> Result<(), AgiError> {
        self.command(&format!("STREAM FILE {prompt} \"\"")).await.map(|_| ())
    }

    async fn say_digits(&mut self, digits: &str) -> Result<(), AgiError> {
        self.command(&format!("SAY DIGITS {digits} \"\"")).await.map(|_| ())
    }

    /// Plays `prompt` and collects up to `max` keys, ended by `#` or the timeout.
    async fn get_data(&mut self, prompt: &str, max: u32) -> Result<String, AgiError> {
        self.command(&format!("GET DATA {prompt} {INPUT_TIMEOUT_MS} {max}")).await
    }
}

/// Accepts FastAGI connections until `shutdown` completes; each call runs on its own task.
pub async fn serve(listener: TcpListener, writer: Writer, shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut shutdown = shutdown;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let writer = writer.clone();
                tokio::spawn(async move {
                    match call(stream, &writer).await {
                        Ok(()) | Err(AgiError::Hangup) => {}
                        Err(e) => tracing::warn!(%peer, error = %e, "ivr call ended with an error"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting an AGI connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Asks for a value until it parses and the caller confirms it; `None` after too many tries.
async fn ask<T: ToString>(
    session: &mut AgiSession,
    prompt: &str,
    invalid: &str,
    max_digits: u32,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, AgiError> {
    // Silence and wrong keys count against the caller; choosing to re-enter does not, up to a bound.
    let (mut failures, mut rounds) = (0, 0);
    while failures < MAX_TRIES && rounds < 2 * MAX_TRIES {
        rounds += 1;
        let keys = session.get_data(prompt, max_digits).await?;
        if keys.is_empty() {
            failures += 1;
            session.play("kontor/no-input").await?;
            continue;
        }
        let Some(value) = parse(&keys) else {
            failures += 1;
            session.play(invalid).await?;
            continue;
        };
        session.play("kontor/you-entered").await?;
        // Read back as keyed: a meter showing 00188 is "zero zero one eight eight", not "188".
        let keyed: String = keys.chars().filter(char::is_ascii_digit).collect();
        session.say_digits(&keyed).await?;
        let mut confirmed = None;
        for _ in 0..MAX_TRIES {
            match session.get_data("kontor/confirm", 1).await?.as_str() {
                "1" => {
                    confirmed = Some(true);
                    break;
                }
                "2" => {
                    confirmed = Some(false);
                    break;
                }
                "" => session.play("kontor/no-input").await?,
                _ => {}
            }
        }
        match confirmed {
            Some(true) => return Ok(Some(value)),
            Some(false) => {}
            None => failures += 1,
        }
    }
    Ok(None)
}

/// One call, from the greeting to the goodbye.
pub async fn call(stream: TcpStream, writer: &Writer) -> Result<(), AgiError> {
    let mut session = AgiSession::start(stream).await?;
    let caller = session.env.get("callerid").cloned().unwrap_or_default();
    let call_id = session.env.get("uniqueid").cloned().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    session.command("ANSWER").await?;
    session.play("kontor/welcome").await?;

    let subscription = ask(&mut session, "kontor/enter-subscription", "kontor/invalid-subscription", 20, |keys| {
        SubscriptionNumber::parse(keys).ok()
    })
    .await?;
    let Some(subscription) = subscription else { return goodbye(&mut session).await };
    let reading =
        ask(&mut session, "kontor/enter-reading", "kontor/invalid-reading", 12, |keys| Reading::parse(keys).ok())
            .await?;
    let Some(reading) = reading else { return goodbye(&mut session).await };

    let declaration = SmsDeclaration { reading, subscription, receipt: None };
    let incoming = Incoming::from_phone(PhoneDeclaration {
        channel: Channel::Ivr,
        message_id: &call_id,
        sender: &caller,
        declaration: &declaration,
        received_at: OffsetDateTime::now_utc(),
    });
    let outcome = match writer.submit(vec![incoming]).await.map(|o| o.into_iter().next()) {
        Ok(Some(outcome)) => outcome,
        Ok(None) | Err(_) => {
            session.play("kontor/try-later").await?;
            return goodbye(&mut session).await;
        }
    };
    let summary = match outcome.status {
        Status::Accepted => "kontor/outcome-accepted",
        Status::NeedsReview => "kontor/outcome-review",
        Status::Rejected => "kontor/outcome-rejected",
    };
    session.play(summary).await?;
    if let Some(code) = outcome.code.filter(|_| outcome.status != Status::Accepted) {
        session.play(&reason_prompt(code)).await?;
    }
    if let Some(code) = outcome.tracking_seq.and_then(TrackingCode::from_sequence) {
        session.play("kontor/tracking-code").await?;
        session.say_digits(code.as_str()).await?;
    }
    goodbye(&mut session).await
}

async fn goodbye(session: &mut AgiSession) -> Result<(), AgiError> {
    session.play("kontor/goodbye").await?;
    session.command("HANGUP").await.map(|_| ())
}
