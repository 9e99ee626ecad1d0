//! The phone channel: a FastAGI service that an Asterisk or Issabel dialplan sends a call to
//! (`AGI(agi://HOST:4573/meter-reading)`).
//!
//! The caller keys in the subscription code and the reading, hears each back and confirms, and
//! hears the outcome and the tracking code digit by digit. Prompts are sound files under
//! `kontor/`, listed with their Persian text by [`prompts`]: `kontor ivr-prompts` speaks them
//! into 8 kHz files with espeak-ng as placeholders until the company records its own. The
//! caller's number plays the role of an SMS sender's; the call's unique id and what was keyed
//! make the declaration's id, and nothing is stored before the last confirmation.
//!
//! Asterisk answers `result=-1` both when the caller has hung up and when a sound file is
//! missing while the caller is still there: the call asks for the channel's status before it
//! ends, and goes on past a missing file with a warning naming it.

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

/// The script name the dialplan calls (`agi://HOST:4573/meter-reading`); a call to another
/// script is a dialplan mistake, logged and hung up.
pub const SCRIPT: &str = "meter-reading";

/// The call's fixed prompts: the sound file, what it says in Persian (what the placeholders are
/// spoken from, and the script for the company's recording), and in English.
pub const PROMPTS: &[(&str, &str, &str)] = &[
    (
        "kontor/welcome",
        "به سامانهٔ اعلام رقم کنتور شرکت گاز خوش آمدید.",
        "Welcome to the meter-reading line of the gas company.",
    ),
    (
        "kontor/enter-subscription",
        "لطفاً کد اشتراک خود را وارد کنید و سپس کلید مربع را فشار دهید.",
        "Key in your subscription code, then press the hash key.",
    ),
    (
        "kontor/enter-reading",
        "لطفاً ارقام سیاه کنتور را وارد کنید و سپس کلید مربع را فشار دهید.",
        "Key in the black digits of your meter, then press the hash key.",
    ),
    ("kontor/you-entered", "شما وارد کردید:", "You entered:"),
    (
        "kontor/confirm",
        "اگر درست است، کلید یک را فشار دهید؛ برای وارد کردن دوباره، کلید دو را فشار دهید.",
        "If this is right, press 1; to enter it again, press 2.",
    ),
    ("kontor/no-input", "کلیدی دریافت نشد.", "We did not receive any keys."),
    ("kontor/invalid-subscription", "کد اشتراک وارد شده درست نیست.", "That is not a valid subscription code."),
    ("kontor/invalid-reading", "رقم وارد شده درست نیست.", "That is not a valid reading."),
    ("kontor/outcome-accepted", "رقم کنتور شما ثبت شد.", "Your reading has been recorded."),
    (
        "kontor/outcome-review",
        "رقم کنتور شما ثبت شد و کارشناسان ما آن را بررسی می‌کنند.",
        "Your reading has been recorded and will be checked by our staff.",
    ),
    ("kontor/outcome-rejected", "رقم کنتور شما پذیرفته نشد.", "Your reading could not be accepted."),
    ("kontor/tracking-code", "کد رهگیری شما:", "Your tracking code is:"),
    (
        "kontor/try-later",
        "سامانه اکنون پاسخ‌گو نیست؛ لطفاً بعداً تماس بگیرید.",
        "The service is busy; please call again later.",
    ),
    ("kontor/goodbye", "از تماس شما سپاسگزاریم. خدانگهدار.", "Thank you. Goodbye."),
];

/// How the digits are said, for Asterisk's `digits/0` … `digits/9` in the `fa` language.
pub const DIGITS_FA: [&str; 10] = ["صفر", "یک", "دو", "سه", "چهار", "پنج", "شش", "هفت", "هشت", "نه"];

/// The extra prompt that explains a code, e.g. `kontor/reason-identity_mismatch`.
pub fn reason_prompt(code: Code) -> String {
    format!("kontor/reason-{}", code.as_str())
}

/// Every sound file a call can play under `kontor/`, with its Persian and English text: the
/// fixed prompts, and the reason for every code a call can end with other than a plain
/// acceptance (worded as the SMS reply words it: a call names no meter serial either).
pub fn prompts() -> Vec<(String, &'static str, &'static str)> {
    let fixed = PROMPTS.iter().map(|(file, fa, en)| ((*file).to_owned(), *fa, *en));
    let reasons = Code::ALL
        .iter()
        .filter(|code| code.status() != Status::Accepted)
        .map(|code| (reason_prompt(*code), shared::sms::outcome_message(Some(*code)), code.message(shared::Lang::En)));
    fixed.chain(reasons).collect()
}

/// Why a call ended early.
#[derive(Debug, thiserror::Error)]
pub enum AgiError {
    #[error("the caller hung up")]
    Hangup,
    /// `result=-1`: a hang-up, or a sound file Asterisk could not find.
    #[error("Asterisk could not carry out the command")]
    Failed,
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
                    return Err(AgiError::Failed);
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

    /// Whether the caller is still on the line: `CHANNEL STATUS` 6 is "up". After a hang-up
    /// Asterisk answers `511`, `-1` or `HANGUP`.
    async fn still_there(&mut self) -> Result<bool, AgiError> {
        match self.command("CHANNEL STATUS").await {
            Ok(status) => Ok(status == "6"),
            Err(AgiError::Failed | AgiError::Hangup) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A command that may fail for a missing sound file: when the caller is still there it is
    /// logged (naming the file) and answered `None`, and the call goes on.
    async fn tolerant(&mut self, command: &str) -> Result<Option<String>, AgiError> {
        match self.command(command).await {
            Err(AgiError::Failed) if self.still_there().await? => {
                tracing::warn!(command, "ivr: Asterisk could not play this (is the sound file missing?); going on");
                Ok(None)
            }
            Err(AgiError::Failed) => Err(AgiError::Hangup),
            other => other.map(Some),
        }
    }

    async fn play(&mut self, prompt: &str) -> Result<(), AgiError> {
        self.tolerant(&format!("STREAM FILE {prompt} \"\"")).await.map(|_| ())
    }

    async fn say_digits(&mut self, digits: &str) -> Result<(), AgiError> {
        self.tolerant(&format!("SAY DIGITS {digits} \"\"")).await.map(|_| ())
    }

    /// Plays `prompt` and collects up to `max` keys, ended by `#` or the timeout. Without the
    /// prompt's file the keys are still collected, after a moment of Asterisk's own silence.
    async fn get_data(&mut self, prompt: &str, max: u32) -> Result<String, AgiError> {
        match self.tolerant(&format!("GET DATA {prompt} {INPUT_TIMEOUT_MS} {max}")).await? {
            Some(keys) => Ok(keys),
            None => match self.command(&format!("GET DATA silence/1 {INPUT_TIMEOUT_MS} {max}")).await {
                Err(AgiError::Failed) => Err(AgiError::Hangup),
                other => other,
            },
        }
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
                        Ok(()) | Err(AgiError::Hangup | AgiError::Failed) => {}
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
    // `agi://HOST:4573/meter-reading` arrives as `agi_network_script: meter-reading`; an AGI
    // line without a script is taken to mean this one.
    let script = session.env.get("network_script").map(|s| s.trim_matches('/')).unwrap_or_default();
    if !script.is_empty() && script != SCRIPT {
        tracing::warn!(script, "ivr: the dialplan asked for a script this server does not have; hanging up");
        return session.command("HANGUP").await.map(|_| ());
    }
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

    // Asterisk gives a channel that runs the script again (the caller sent back through the
    // dialplan) the same unique id: with what was keyed in the id, a second reading on one
    // channel is a declaration of its own, and the same one keyed twice is one.
    let message_id = format!("{call_id}:{subscription}:{reading}");
    let declaration = SmsDeclaration { reading, subscription, receipt: None };
    let incoming = Incoming::from_phone(PhoneDeclaration {
        channel: Channel::Ivr,
        message_id: &message_id,
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
