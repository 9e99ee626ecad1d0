//! Kontor's web app: declare meter readings with no signal; they sync by themselves.
//!
//! Client-side Leptos, built by Trunk, served at `/pwa/`. Components hold no business logic:
//! the rules come from `shared`, the device store from `outbox`, the server from `api`, and the
//! sync loop lives in `sync`.
#![forbid(unsafe_code)]

mod api;
mod i18n;
mod js;
mod model;
mod outbox;
mod sync;
mod ui;

fn main() {
    // The frame `index.html` paints while the WebAssembly loads gives way to the app.
    if let Some(boot) = leptos::prelude::document().get_element_by_id("boot") {
        boot.remove();
    }
    leptos::mount::mount_to_body(ui::App);
}
