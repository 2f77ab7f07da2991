//! The relay's NATS side (JetStream): a file-backed stream `LEDGER` over the subjects
//! `ledger.events.>`, each event published to `ledger.events.<EventType>` with `Nats-Msg-Id` set
//! to its position, and awaited until JetStream acknowledges that it stored it. JetStream drops a
//! duplicate id within its window; beyond that, the relay itself never publishes what the stream
//! already holds: on connecting it reads the position of the stream's last message and resumes
//! after it. Together: each position is stored once.

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;

use super::{Confirm, Message};
use crate::{Error, Result};

/// The stream the events go to, and its subjects.
pub const STREAM: &str = "LEDGER";
pub const SUBJECT_PREFIX: &str = "ledger.events";

pub struct NatsSink {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

fn broker(e: impl std::fmt::Display) -> Error {
    Error::Relay(format!("NATS: {e}"))
}

impl NatsSink {
    pub async fn connect(url: &str) -> Result<Self> {
        let client = async_nats::connect(url).await.map_err(broker)?;
        let jetstream = jetstream::new(client.clone());
        jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![format!("{SUBJECT_PREFIX}.>")],
                storage: stream::StorageType::File,
                ..stream::Config::default()
            })
            .await
            .map_err(broker)?;
        Ok(Self { client, jetstream })
    }

    /// The position of the stream's last message, if it has one.
    pub async fn last_stored(&mut self) -> Result<Option<i64>> {
        let mut stream = self.jetstream.get_stream(STREAM).await.map_err(broker)?;
        let last_sequence = stream.info().await.map_err(broker)?.state.last_sequence;
        if last_sequence == 0 {
            return Ok(None);
        }
        let last = stream
            .get_raw_message(last_sequence)
            .await
            .map_err(broker)?;
        let id = last
            .headers
            .get(NATS_MESSAGE_ID)
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        id.parse::<i64>().map(Some).map_err(|_| {
            Error::Relay(format!(
                "NATS: the last message of {STREAM} (sequence {last_sequence}) has no position \
                 as its Nats-Msg-Id ({id:?}): is something else publishing to {SUBJECT_PREFIX}.>?"
            ))
        })
    }

    pub async fn publish(&mut self, message: Message<'_>) -> Result<Confirm> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, message.position.to_string().as_str());
        let subject = format!("{SUBJECT_PREFIX}.{}", message.event_type);
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, message.body.into())
            .await
            .map_err(broker)?;
        Ok(Box::pin(async move {
            ack.await.map_err(broker)?;
            Ok(())
        }))
    }

    pub async fn close(self) {
        let _ = self.client.flush().await;
        drop(self.client);
    }
}
