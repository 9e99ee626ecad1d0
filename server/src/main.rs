//! `kontor`: the sync server's command line (serve, import the subscriber registry, create
//! console operators).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use server::gateways::{self, Gateway, GatewaySettings};
use server::sms::{PullSettings, SmsConfig, TwilioWebhook};
use server::store::{AuditEntry, OperatorRecord, Role, SqlStore, Store};
use server::{ServeOptions, billing, demo, import};
use time::OffsetDateTime;

/// mimalloc rather than glibc's allocator: a request's allocations and frees cost a tenth fewer
/// instructions in all (see `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The SQLite file used when no database is named.
const DEFAULT_DATABASE: &str = "sqlite://data/kontor.db?mode=rwc";

#[derive(Parser)]
#[command(name = "kontor", version, about = "Kontor: gas meter-reading declarations, reconciled exactly once")]
struct Cli {
    /// How log lines are written: `text` for people, `json` (one object a line, with the
    /// request's id) for a log collector.
    #[arg(long, global = true, env = "KONTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once at start; boxing `serve`'s flags buys nothing")]
enum Command {
    /// Serve the sync API and the web app.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "KONTOR_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A sqlx database URL: sqlite://PATH?mode=rwc or postgres://USER@HOST/DB.
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE)]
        database: String,
        /// Seed the demo subscribers and console accounts, and print them.
        #[arg(long)]
        demo: bool,
        /// A built web app to serve under /pwa/ instead of the one built into this binary (for
        /// development: `cargo xtask dist` writes dist/pwa).
        #[arg(long, env = "KONTOR_WEB_ROOT")]
        web_root: Option<PathBuf>,
        #[command(flatten)]
        sms: SmsArgs,
        /// Address for FastAGI calls from Asterisk (port 4573 is usual); the phone channel is off
        /// without it.
        #[arg(long, env = "KONTOR_IVR_LISTEN")]
        ivr_listen: Option<SocketAddr>,
        /// The token the billing system sends as `Authorization: Bearer` to page through
        /// GET /api/v1/billing/readings; that endpoint is off without it.
        #[arg(long, env = "KONTOR_BILLING_TOKEN", hide_env_values = true)]
        billing_token: Option<String>,
        /// Days a meter photo is kept after it arrives (long enough for a billing dispute).
        #[arg(long, env = "KONTOR_PHOTO_RETENTION_DAYS", default_value_t = 400,
            value_parser = clap::value_parser!(u64).range(1..=3650))]
        photo_retention_days: u64,
        /// The reverse proxies in front (CIDRs, comma-separated, e.g. 10.0.0.0/8,::1/128): from
        /// these peers only, the client's address is read from `X-Forwarded-For` or `Forwarded`
        /// for the per-client limits. Without it every peer is the client.
        #[arg(long, env = "KONTOR_TRUSTED_PROXIES", value_delimiter = ',')]
        trusted_proxies: Vec<ipnet::IpNet>,
        /// Serve HTTPS with this certificate chain (PEM), for phones with no proxy in front;
        /// needs --tls-key.
        #[arg(long, env = "KONTOR_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, env = "KONTOR_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Connections open at once; past it a new one is answered 503 with Retry-After. Keep
        /// it well below the file-descriptor limit (`ulimit -n`).
        #[arg(long, env = "KONTOR_MAX_CONNECTIONS", default_value_t = server::listener::MAX_CONNECTIONS)]
        max_connections: usize,
        /// Threads serving HTTP; by default one per processor, less one on SQLite, whose writer
        /// has a thread of its own.
        #[arg(long, env = "KONTOR_HTTP_THREADS")]
        http_threads: Option<std::num::NonZeroUsize>,
    },
    /// Write the readings that count for billing after a cursor, in feed order, to stdout; the
    /// cursor to continue from goes to stderr.
    ExportReadings {
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE)]
        database: String,
        /// The cursor the last export ended at (0, or nothing, for the start).
        #[arg(long, default_value = "0")]
        since: String,
        #[arg(long, value_parser = ["csv", "json"], default_value = "csv")]
        format: String,
    },
    /// Move the whole store to another, empty database (a province from SQLite to PostgreSQL),
    /// then compare both table by table (row counts and SHA-256). Stop `kontor serve` first.
    MigrateStore {
        /// The store to move, e.g. `sqlite://data/kontor.db`.
        #[arg(long)]
        from: String,
        /// The empty database to move it to, e.g. `postgres://kontor@db/kontor`.
        #[arg(long)]
        to: String,
    },
    /// Copy a SQLite store consistently while it serves (VACUUM INTO), check the copy, and
    /// name it FILE only once it is whole; never overwrites.
    Backup {
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE)]
        database: String,
        /// Where the copy goes.
        #[arg(long)]
        to: PathBuf,
    },
    /// Check a backup: SQLite's integrity check, every schema migration, and what it holds.
    VerifyBackup { file: PathBuf },
    /// Write the IVR's prompts and the digits as 8 kHz WAV files, spoken in Persian by espeak-ng
    /// (placeholders until recorded ones replace them), laid out for an Asterisk `fa` folder.
    IvrPrompts {
        #[arg(long)]
        out: PathBuf,
    },
    /// Import or update subscribers from the billing system's CSV export.
    ImportSubscribers {
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE)]
        database: String,
        /// CSV with the header subscription,meter_serial,meter_digits,last_reading,last_read_at,avg_daily_m3,phone
        file: PathBuf,
    },
    /// Create a console account, or reset its role, office and password. The password is asked
    /// for on a terminal, or read from the first line of stdin.
    CreateOperator {
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE)]
        database: String,
        /// office (declares for subscribers), reviewer (decides held declarations) or admin.
        #[arg(long, value_parser = ["office", "reviewer", "admin"])]
        role: String,
        /// The counter office or department the account belongs to.
        #[arg(long)]
        office: String,
        username: String,
    },
}

/// The shortest password the console takes.
const MIN_PASSWORD_CHARS: usize = 10;

fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("reading the password")?;
        let again = rpassword::prompt_password("password again: ").context("reading the password")?;
        anyhow::ensure!(first == again, "the two passwords differ");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The SMS channel: on when a shared secret is set.
#[derive(clap::Args)]
struct SmsArgs {
    /// The secret the SMS gateway sends with every message; the webhook is off without it.
    #[arg(long, env = "KONTOR_SMS_SECRET", hide_env_values = true)]
    sms_secret: Option<String>,
    /// The header that carries the secret.
    #[arg(long, env = "KONTOR_SMS_SECRET_HEADER", default_value = "x-kontor-sms-secret")]
    sms_secret_header: String,
    /// The gateway replies are sent through; `generic` with `--sms-reply-url` alone, else replies
    /// are only logged (and returned in the webhook's answer).
    #[arg(long, env = "KONTOR_SMS_GATEWAY", value_enum)]
    sms_gateway: Option<Gateway>,
    /// The gateway's API key (Magfa: the password; Twilio: the auth token).
    #[arg(long, env = "KONTOR_SMS_GATEWAY_KEY", hide_env_values = true)]
    sms_gateway_key: Option<String>,
    /// Twilio's account SID; Magfa's `username/domain`.
    #[arg(long, env = "KONTOR_SMS_GATEWAY_ACCOUNT")]
    sms_gateway_account: Option<String>,
    /// The line replies are sent from (a number or short code; Twilio: a number or `MG…` service).
    #[arg(long, env = "KONTOR_SMS_GATEWAY_LINE")]
    sms_gateway_line: Option<String>,
    /// The gateway API's address, when not its public one (an on-premises relay, a proxy).
    #[arg(long, env = "KONTOR_SMS_GATEWAY_URL")]
    sms_gateway_url: Option<String>,
    /// Twilio's webhook URL as set in Twilio's console (`https://HOST/api/v1/sms/twilio`): turns
    /// on Twilio's door, whose requests are checked by their signature with the auth token
    /// (`--sms-gateway-key`).
    #[arg(long, env = "KONTOR_SMS_TWILIO_WEBHOOK_URL")]
    sms_twilio_webhook_url: Option<String>,
    /// The `generic` gateway: a URL template with {to} and {text}, sent with a GET.
    #[arg(long, env = "KONTOR_SMS_REPLY_URL", hide_env_values = true)]
    sms_reply_url: Option<String>,
    /// Fetch received messages from the gateway's inbox (smsir, ghasedak, magfa, ippanel), which
    /// keeps them to be fetched instead of pushing them; needs no `--sms-secret`.
    #[arg(long, env = "KONTOR_SMS_PULL")]
    sms_pull: bool,
    /// Seconds between two reads of the gateway's inbox.
    #[arg(long, env = "KONTOR_SMS_PULL_EVERY", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    sms_pull_every: u64,
}

impl SmsArgs {
    fn config(self) -> anyhow::Result<Option<SmsConfig>> {
        let secret = self.sms_secret.filter(|s| !s.is_empty());
        if secret.is_none() && !self.sms_pull {
            return Ok(None);
        }
        let secret_header = axum::http::HeaderName::try_from(self.sms_secret_header.to_ascii_lowercase())
            .context("--sms-secret-header is not a valid header name")?;
        let gateway =
            self.sms_gateway.unwrap_or(if self.sms_reply_url.is_some() { Gateway::Generic } else { Gateway::None });
        let settings = GatewaySettings {
            key: self.sms_gateway_key,
            account: self.sms_gateway_account,
            line: self.sms_gateway_line,
            base_url: self.sms_gateway_url,
            url_template: self.sms_reply_url,
        };
        let sender = gateways::sender(gateway, &settings)?;
        let twilio = match self.sms_twilio_webhook_url {
            Some(url) => Some(TwilioWebhook {
                auth_token: settings.key.clone().context("--sms-twilio-webhook-url needs --sms-gateway-key")?,
                url,
            }),
            None => None,
        };
        let pull = if self.sms_pull {
            Some(PullSettings {
                reader: gateways::reader(gateway, &settings)?,
                every: std::time::Duration::from_secs(self.sms_pull_every),
            })
        } else {
            None
        };
        Ok(Some(SmsConfig { twilio, pull, ..SmsConfig::new(secret_header, secret.unwrap_or_default(), sender) }))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_current_span(true).with_env_filter(filter).init(),
    }
    let processors = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = match &cli.command {
        Command::Serve { http_threads: Some(threads), .. } => threads.get(),
        Command::Serve { database, .. } => server::http_threads(database, processors),
        _ => processors,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if matches!(cli.command, Command::Serve { .. }) {
        tracing::info!(http_threads = threads, processors, "runtime started");
    }
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            database,
            demo,
            web_root,
            sms,
            ivr_listen,
            billing_token,
            photo_retention_days,
            trusted_proxies,
            max_connections,
            tls_cert,
            tls_key,
            http_threads: _,
        } => {
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(server::listener::tls_config(cert, key)?),
                _ => None,
            };
            let sms = sms.config()?;
            let ivr = match ivr_listen {
                Some(address) => Some(
                    tokio::net::TcpListener::bind(address)
                        .await
                        .with_context(|| format!("binding {address} for FastAGI"))?,
                ),
                None => None,
            };
            let store = Arc::new(SqlStore::connect(&database).await?);
            if demo {
                let rows = demo::subscribers(OffsetDateTime::now_utc());
                store.upsert_subscribers(&rows, OffsetDateTime::now_utc()).await.context("seeding demo subscribers")?;
                println!("Demo subscribers (subscription / meter serial / last billed reading):");
                for row in &rows {
                    println!("  {}  {}  {}", row.subscription, row.meter_serial, row.last_reading.unwrap_or_default());
                }
                demo::operators(store.as_ref(), OffsetDateTime::now_utc()).await.context("creating demo accounts")?;
                let names: Vec<&str> = demo::OPERATORS.iter().map(|(name, _, _)| *name).collect();
                println!(
                    "Demo console accounts at /office/: {} (password {})",
                    names.join(", "),
                    demo::OPERATOR_PASSWORD
                );
            }
            let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
            tracing::info!(
                address = %listener.local_addr()?,
                database = %server::store::sql_redact(&database),
                web_root = %web_root.as_deref().map_or_else(|| "(built in)".into(), |p| p.display().to_string()),
                "kontor is serving"
            );
            let scheme = if tls.is_some() { "https" } else { "http" };
            let web = match &web_root {
                Some(root) => format!("web app at /pwa/ from {}", root.display()),
                None if server::pwa::Embedded::built_in().is_some() => "web app at /pwa/, built in".to_owned(),
                None => "no web app: this binary was built before `cargo xtask dist`; give --web-root".to_owned(),
            };
            println!("Serving on {scheme}://{}/ ({web})", listener.local_addr()?);
            if sms.is_some() {
                println!("SMS webhook at /api/v1/sms/inbound");
            }
            if let Some(ivr) = &ivr {
                println!("FastAGI (IVR) on agi://{}/meter-reading", ivr.local_addr()?);
            }
            if billing_token.is_some() {
                println!("Billing hand-off at /api/v1/billing/readings");
            }
            let options = ServeOptions {
                web_root,
                embedded_web: true,
                sms,
                ivr,
                billing_token,
                trusted_proxies,
                max_connections: Some(max_connections),
                tls,
                photo_retention: Some(std::time::Duration::from_secs(photo_retention_days * 24 * 3600)),
                ..ServeOptions::default()
            };
            let served = server::serve(listener, store.clone(), options, server::shutdown_signal()).await;
            store.close().await;
            served
        }
        Command::Backup { database, to } => {
            let contents = server::backup::backup(&database, &to)?;
            println!("backed up to {}: {contents}", to.display());
            Ok(())
        }
        Command::IvrPrompts { out } => {
            let written = server::voice::write_prompts(&out)?;
            println!(
                "{} sound files under {}: copy them into /var/lib/asterisk/sounds/fa/",
                written.len(),
                out.display()
            );
            Ok(())
        }
        Command::VerifyBackup { file } => {
            let contents = server::backup::verify(&file)?;
            println!("{} is whole: {contents}", file.display());
            Ok(())
        }
        Command::ImportSubscribers { database, file } => {
            let reader = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let rows = match import::parse_csv(reader) {
                Ok(rows) => rows,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{}: {e}", file.display());
                    }
                    anyhow::bail!("nothing imported: {} bad row(s)", errors.len());
                }
            };
            let store = SqlStore::connect(&database).await?;
            store.upsert_subscribers(&rows, OffsetDateTime::now_utc()).await.context("importing subscribers")?;
            println!("imported {} subscriber(s)", rows.len());
            store.close().await;
            Ok(())
        }
        Command::MigrateStore { from, to } => {
            let source = SqlStore::connect(&from).await?;
            let target = SqlStore::connect(&to).await?;
            let moved = server::store::transfer::transfer(&source, &target).await?;
            for m in &moved {
                println!("{:<14} {:>10} rows  sha256 {}", m.table, m.rows, m.sha256);
            }
            println!("moved and verified: every table has the same rows and checksum on both sides");
            source.close().await;
            target.close().await;
            Ok(())
        }
        Command::ExportReadings { database, since, format } => {
            let after =
                billing::parse_cursor(Some(&since)).context("--since is not a cursor from an earlier export")?;
            let store = SqlStore::connect(&database).await?;
            let format = if format == "json" { billing::Format::Json } else { billing::Format::Csv };
            let (count, next) = billing::export(&store, after, format, &mut std::io::stdout().lock()).await?;
            let detail = format!("command line: after {after}, {count} reading(s), next {next}");
            let entry = AuditEntry {
                at: OffsetDateTime::now_utc(),
                username: "command-line",
                action: "export",
                detail: &detail,
            };
            store.audit(&entry).await?;
            eprintln!("{count} reading(s); next cursor: {next}");
            store.close().await;
            Ok(())
        }
        Command::CreateOperator { database, role, office, username } => {
            let role = Role::from_str_opt(&role).context("unknown role")?;
            let username = username.trim().to_owned();
            anyhow::ensure!(
                !username.is_empty() && username.chars().count() <= 64 && !username.chars().any(char::is_whitespace),
                "a username is 1 to 64 characters without spaces"
            );
            let office = office.trim().to_owned();
            anyhow::ensure!(!office.is_empty(), "name the office");
            let password = read_password()?;
            anyhow::ensure!(
                password.chars().count() >= MIN_PASSWORD_CHARS,
                "a password has at least {MIN_PASSWORD_CHARS} characters"
            );
            let password_hash = server::console::auth::hash_password(&password)?;
            let store = SqlStore::connect(&database).await?;
            let now = OffsetDateTime::now_utc();
            let existed = store.operator(&username).await?.is_some();
            let operator = OperatorRecord { username: username.clone(), role, office: office.clone(), password_hash };
            store.save_operator(&operator, now).await.context("saving the operator")?;
            let detail = format!("{username}: {} at {office}", role.as_str());
            let action = if existed { "operator_reset" } else { "operator_created" };
            store.audit(&AuditEntry { at: now, username: "command-line", action, detail: &detail }).await?;
            println!("{} {username} ({}, {office})", if existed { "updated" } else { "created" }, role.as_str());
            store.close().await;
            Ok(())
        }
    }
}
