//! `kontor ivr-prompts --out DIR`: every sound file the IVR plays ([`crate::ivr::prompts`]) and
//! the ten digits, spoken from their Persian text by espeak-ng's Persian voice and converted by
//! SoX into what Asterisk plays without transcoding: WAV, 8 kHz, 16-bit, mono. They are
//! placeholders, intelligible but robotic, until the company records its own under the same
//! names. `DIR` takes the layout of an Asterisk language folder (`kontor/welcome.wav`,
//! `digits/0.wav`, …): copy it into `/var/lib/asterisk/sounds/fa/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The sample rate Asterisk's `wav` format plays at.
pub const SAMPLE_RATE: u32 = 8000;

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Speaks `text` into `path` (created with its folder), at 8 kHz.
fn speak(text: &str, path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let raw = path.with_extension("espeak.wav");
    let spoken = Command::new("espeak-ng")
        .args(["-v", "fa", "-s", "140", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .context("running espeak-ng")?;
    if !spoken.success() {
        bail!("espeak-ng could not speak {}", path.display());
    }
    let rate = SAMPLE_RATE.to_string();
    let converted = Command::new("sox")
        .arg(&raw)
        .args(["-r", &rate, "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(path)
        .status()
        .context("running sox")?;
    let _ = std::fs::remove_file(&raw);
    if !converted.success() {
        bail!("sox could not convert {}", path.display());
    }
    Ok(())
}

/// Writes every prompt and digit under `out`; answers the files written.
pub fn write_prompts(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !have("espeak-ng") || !have("sox") {
        bail!("the prompts are spoken by espeak-ng and converted by SoX: `apt-get install -y espeak-ng sox`");
    }
    let mut written = Vec::new();
    for (file, fa, _) in crate::ivr::prompts() {
        let path = out.join(format!("{file}.wav"));
        speak(fa, &path)?;
        written.push(path);
    }
    for (digit, word) in crate::ivr::DIGITS_FA.iter().enumerate() {
        let path = out.join(format!("digits/{digit}.wav"));
        speak(word, &path)?;
        written.push(path);
    }
    Ok(written)
}
