//! The HTTP API of the ledger (axum), its configuration, and the service's start and stop.

pub mod auth;
pub mod config;
mod cursor;
pub mod dto;
pub mod error;
pub mod extract;
pub mod forward;
mod http_metrics;
mod render;
pub mod routes;
pub mod server;
pub mod state;
mod strict_json;

pub use config::ServeConfig;
pub use server::Server;
