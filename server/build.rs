//! Embeds the built web app (`dist/pwa`, from `cargo xtask dist`) in the `kontor` binary, so that
//! one file serves it on a bare server (`pwa::Embedded`). Writes `$OUT_DIR/web_app.rs`: every file
//! of the build with its brotli and gzip copies, by path; empty when there is no build yet (or
//! `KONTOR_EMBED_WEB=0`), and then the server serves the app only from `--web-root`.

use std::path::{Path, PathBuf};

fn files_under(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push((relative.to_string_lossy().replace('\\', "/"), path.clone()));
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/pwa");
    // A folder: cargo looks at everything under it.
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=KONTOR_EMBED_WEB");
    let mut files = Vec::new();
    if std::env::var("KONTOR_EMBED_WEB").as_deref() != Ok("0") && root.join("index.html").is_file() {
        files_under(&root, &root, &mut files);
    }
    files.sort();
    let mut code =
        String::from("/// The built web app's files by path under `/pwa/`, as `cargo xtask dist` wrote them.\n");
    code.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        let absolute = path.canonicalize().unwrap_or_else(|_| path.clone());
        code.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", absolute.display().to_string()));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_app.rs");
    std::fs::write(out, code).expect("write web_app.rs");
}
