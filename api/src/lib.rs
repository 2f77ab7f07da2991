//! The HTTP API of the ledger (axum), its configuration, and the service's start and stop.

pub mod auth;
pub mod books;
pub mod config;
mod console;
mod cursor;
pub mod dry_run;
pub mod error;
pub mod extract;
pub mod forward;
mod http_metrics;
pub mod ledger_transfers;
mod render;
pub mod reply;
pub mod requests;
pub mod routes;
pub mod server;
pub mod state;
pub mod views;

pub use config::ServeConfig;
pub use render::event_json;
pub use server::Server;

/// For `skip_serializing_if`: a flag that is off is left out of the JSON, of requests and views
/// alike.
fn is_false(value: &bool) -> bool {
    !*value
}
