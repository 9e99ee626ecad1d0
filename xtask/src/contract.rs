//! The contract integrators rely on, checked by tools nobody here wrote, against the OpenAPI
//! document as a live `kontor serve` sends it: openapi-spec-validator (the document is valid
//! OpenAPI), then schemathesis, which generates requests from the document, valid and invalid,
//! and fails on any server error and any status, header or body the document does not declare.
//! Bounded for `cargo xtask test` ([`EXAMPLES`] per operation); `cargo xtask contract
//! --examples N` runs more. Both tools come from PyPI into a virtual environment under
//! `target/tools/py`, at pinned versions.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::tools;

const PY_TOOLS: [&str; 2] = ["schemathesis==4.32.5", "openapi-spec-validator==0.9.0"];
/// Examples per operation in `cargo xtask test`.
pub const EXAMPLES: u32 = 30;
const SMS_SECRET: &str = "contract-sms-secret";
const BILLING_TOKEN: &str = "contract-billing-token-7f3a9c2e41d86b05";

/// The virtual environment's `bin`, with the pinned tools installed (once).
fn python_tools() -> anyhow::Result<PathBuf> {
    let venv = tools::workspace_root().join("target/tools/py");
    let bin = venv.join("bin");
    let stamp = venv.join("installed.txt");
    let wanted = PY_TOOLS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(bin);
    }
    println!("==> installing {} (PyPI, into target/tools/py, once)", PY_TOOLS.join(" and "));
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().context("running python3 -m venv")?;
    if !made.success() {
        bail!("python3 could not make a virtual environment (Debian: `apt-get install python3-venv`)");
    }
    let installed = Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PY_TOOLS)
        .status()
        .context("running pip")?;
    if !installed.success() {
        bail!("pip could not install {}", PY_TOOLS.join(" "));
    }
    std::fs::write(&stamp, wanted)?;
    Ok(bin)
}

/// Validates the served document and runs schemathesis with `examples` per operation.
pub fn contract(examples: u32) -> anyhow::Result<()> {
    let bin = python_tools()?;
    tools::cargo(&["build", "-p", "server", "--bin", "kontor"])?;
    let dir = tools::workspace_root().join("target/contract");
    // Twilio's door on too, so that its refusals are what the document says (a signature no
    // generated request can have: every one is refused 401).
    let served = tools::Served::start(
        tools::debug_binary("kontor"),
        &dir,
        &[
            "--sms-secret",
            SMS_SECRET,
            "--billing-token",
            BILLING_TOKEN,
            "--sms-gateway-key",
            "contract-twilio-token",
            "--sms-twilio-webhook-url",
            "https://kontor.example/api/v1/sms/twilio",
        ],
    )?;
    let schema = format!("{}/api/v1/openapi.json", served.base);
    let document = dir.join("openapi.json");
    let fetched =
        Command::new("curl").args(["-sf", "-o"]).arg(&document).arg(&schema).status().context("running curl")?;
    if !fetched.success() {
        bail!("the server did not serve {schema}");
    }
    println!("==> openapi-spec-validator {}", document.display());
    let valid = Command::new(bin.join("openapi-spec-validator")).arg(&document).status()?;
    if !valid.success() {
        bail!("the OpenAPI document is not valid");
    }
    println!("==> schemathesis, {examples} examples per operation");
    let examples = examples.to_string();
    let ran = Command::new(bin.join("schemathesis"))
        .arg("--config-file")
        .arg(tools::workspace_root().join("xtask/schemathesis.toml"))
        .arg("--no-color")
        .args(["run", &schema, "--max-examples", &examples, "--workers", "1"])
        .args(["--header", &format!("x-kontor-sms-secret: {SMS_SECRET}")])
        .args(["--header", &format!("authorization: Bearer {BILLING_TOKEN}")])
        .args(["--seed", "20261207"])
        .env("SCHEMATHESIS_HOOKS", "")
        .status()
        .context("running schemathesis")?;
    drop(served);
    if !ran.success() {
        bail!("schemathesis found the server and its document disagreeing (above)");
    }
    Ok(())
}
