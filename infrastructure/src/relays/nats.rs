//! The relay's NATS side (JetStream): a file-backed stream `LEDGER` over the subjects
//! `ledger.events.>`, each event published to `ledger.events.<EventType>` with `Nats-Msg-Id` set
//! to its position, and awaited until JetStream acknowledges that it stored it. JetStream drops a
//! duplicate id within its window, so publishing a position again is harmless there.
//!
//! The stream never gets a hole. The client reconnects by itself after a broker restart and then
//! sends what was queued, while what it had written to the old connection is lost: without a
//! guard, a later position would be stored after an earlier one was lost. So each message names
//! the stream sequence its predecessor must have (`Nats-Expected-Last-Sequence`), and JetStream
//! refuses it otherwise; the session then fails and the next resumes from what is stored.
//!
//! On connecting, the relay resumes after the stream's last message only when every position
//! from its checkpoint up to that message is in the stream, in order, at its end; otherwise it
//! resumes from its checkpoint, filling the hole (the position lands after the messages already
//! there) and publishing again what is stored (dropped as duplicates within the window).

use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use tracing::warn;

use super::{Confirm, Message, Resume};
use crate::{Error, Result};

/// The stream the events go to, and its subjects.
pub const STREAM: &str = "LEDGER";
pub const SUBJECT_PREFIX: &str = "ledger.events";

/// How many messages past the checkpoint the relay reads back on connecting, at most, to show
/// that the stream holds every position up to its last message. A normal crash leaves up to
/// `in_flight_max` plus a page (2,000 by default); past the bound, the relay resumes from its
/// checkpoint.
const RESUME_CHECK_MAX: i64 = 10_000;

pub struct NatsSink {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The position after which every message is chained to its predecessor, and the stream
    /// sequence of the message before the first of them (0: unchecked). None: nothing chained.
    chain: Option<(i64, u64)>,
}

fn broker(e: impl std::fmt::Display) -> Error {
    Error::Relay(format!("NATS: {e}"))
}

/// The stream the relay publishes into: every subject under `SUBJECT_PREFIX`, kept on disk.
pub fn stream_config() -> stream::Config {
    stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        ..stream::Config::default()
    }
}

impl NatsSink {
    pub async fn connect(url: &str) -> Result<Self> {
        let client = async_nats::connect(url).await.map_err(broker)?;
        let jetstream = jetstream::new(client.clone());
        jetstream
            .get_or_create_stream(stream_config())
            .await
            .map_err(broker)?;
        Ok(Self {
            client,
            jetstream,
            chain: None,
        })
    }

    /// Where to resume from the relay's `checkpoint`: after the stream's last message when every
    /// position from the checkpoint to it is at the stream's end in order, else the checkpoint.
    /// Chains what is published next when it all comes after what the stream holds.
    pub async fn resume(&mut self, checkpoint: i64) -> Result<Resume> {
        let mut stream = self.jetstream.get_stream(STREAM).await.map_err(broker)?;
        let state = stream.info().await.map_err(broker)?.state.clone();
        if state.last_sequence == 0 || state.messages == 0 {
            self.chain = Some((checkpoint, state.last_sequence));
            return Ok(Resume::after(checkpoint));
        }
        let last = position_of(&stream, state.last_sequence).await?;
        if last <= checkpoint {
            self.chain = Some((checkpoint, state.last_sequence));
            return Ok(Resume::after(checkpoint));
        }
        if let Err(why) = tail_holds(&stream, &state, checkpoint, last).await {
            warn!(checkpoint, last, %why, "NATS: the stream {STREAM} holds position {last} but \
                not every one after the relay's checkpoint; resuming from the checkpoint");
            return Ok(Resume {
                after: checkpoint,
                refill_through: Some(last),
            });
        }
        self.chain = Some((last, state.last_sequence));
        Ok(Resume::after(last))
    }

    pub async fn publish(&mut self, message: Message<'_>) -> Result<Confirm> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, message.position.to_string().as_str());
        if let Some((after, sequence)) = self.chain.filter(|(after, _)| message.position > *after) {
            // The relay publishes consecutive positions from `after + 1`, each to be stored as the
            // stream's next message (0: the stream never had one, nothing to check).
            let expected = sequence + (message.position - after - 1) as u64;
            if expected > 0 {
                headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
            }
        }
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

/// The position of the message at `sequence`: its `Nats-Msg-Id`.
async fn position_of(stream: &stream::Stream, sequence: u64) -> Result<i64> {
    let message = stream.get_raw_message(sequence).await.map_err(broker)?;
    let id = message
        .headers
        .get(NATS_MESSAGE_ID)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    id.parse::<i64>().map_err(|_| {
        Error::Relay(format!(
            "NATS: the message of {STREAM} at sequence {sequence} has no position as its \
             Nats-Msg-Id ({id:?}): is something else publishing to {SUBJECT_PREFIX}.>?"
        ))
    })
}

/// Whether the stream's last `last - checkpoint` messages are the positions after `checkpoint`
/// up to `last`, in order: everything up to the checkpoint the broker confirmed, so then the
/// stream holds every position up to `last`. Why not, if not.
async fn tail_holds(
    stream: &stream::Stream,
    state: &stream::State,
    checkpoint: i64,
    last: i64,
) -> std::result::Result<(), String> {
    let count = last - checkpoint;
    if count > RESUME_CHECK_MAX {
        return Err(format!(
            "{count} positions to check, more than {RESUME_CHECK_MAX}"
        ));
    }
    let first = (state.last_sequence + 1)
        .checked_sub(count as u64)
        .filter(|first| *first >= state.first_sequence)
        .ok_or_else(|| format!("{count} positions, fewer messages"))?;
    for (sequence, expected) in (first..state.last_sequence).zip(checkpoint + 1..) {
        match position_of(stream, sequence).await {
            Ok(position) if position == expected => {}
            Ok(position) => {
                return Err(format!(
                    "sequence {sequence} holds {position}, not {expected}"
                ))
            }
            Err(e) => return Err(format!("sequence {sequence}: {e}")),
        }
    }
    Ok(())
}
