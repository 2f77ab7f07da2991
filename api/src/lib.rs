//! The HTTP API of the ledger (axum), its configuration, and the service's start and stop.

pub mod config;
pub mod dto;
pub mod error;
pub mod extract;
mod http_metrics;
mod render;
pub mod routes;
pub mod server;
pub mod state;

pub use config::ServeConfig;
pub use server::Server;
