//! The relay's NATS side (JetStream): each ledger's events go to the subjects
//! `ledger.<ledger>.events.<EventType>` with `Nats-Msg-Id` set to `<ledger>:<position>`, each
//! awaited until JetStream acknowledges that it stored it. JetStream drops a duplicate id within
//! its window, so publishing a position again is harmless there.
//!
//! Each ledger has a file-backed stream of its own over `ledger.<ledger>.events.>`: `LEDGER` for
//! `default` (the stream every event went to before there were many ledgers, its subjects moved
//! from `ledger.events.>`, so its consumers go on), `LEDGER_<ledger>` for another. A stream per
//! ledger because the guard below needs the stream sequence of a ledger's previous message: in a
//! stream shared by ledgers it is not known in advance, and JetStream checks the last sequence
//! of a subject filter (`Nats-Expected-Last-Subject-Sequence-Subject`) only from NATS 2.11 on.
//! A consumer of every ledger binds to the streams, or to `ledger.*.events.>` with a core
//! subscription.
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
use domain::LedgerName;
use tracing::warn;

use super::{Confirm, Message, Resume};
use crate::{Error, Result};

/// The stream of ledger `default`'s events; another ledger's is `LEDGER_<ledger>`.
pub const STREAM: &str = "LEDGER";
/// What every subject starts with: `ledger.<ledger>.events.<EventType>`.
pub const SUBJECT_ROOT: &str = "ledger";

/// The stream a ledger's events go to.
pub fn stream_name(ledger: &LedgerName) -> String {
    if ledger.is_default() {
        STREAM.to_owned()
    } else {
        format!("{STREAM}_{ledger}")
    }
}

/// What a ledger's subjects start with: `ledger.<ledger>.events`.
pub fn subject_prefix(ledger: &LedgerName) -> String {
    format!("{SUBJECT_ROOT}.{ledger}.events")
}

/// The message id of a ledger's position: `<ledger>:<position>`.
pub fn message_id(ledger: &LedgerName, position: i64) -> String {
    format!("{ledger}:{position}")
}

/// How many messages past the checkpoint the relay reads back on connecting, at most, to show
/// that the stream holds every position up to its last message. A normal crash leaves up to
/// `in_flight_max` plus a page (2,000 by default); past the bound, the relay resumes from its
/// checkpoint.
const RESUME_CHECK_MAX: i64 = 10_000;

pub struct NatsSink {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    ledger: LedgerName,
    /// The ledger's stream.
    stream: String,
    /// The position after which every message is chained to its predecessor, and the stream
    /// sequence of the message before the first of them (0: unchecked). None: nothing chained.
    chain: Option<(i64, u64)>,
}

fn broker(e: impl std::fmt::Display) -> Error {
    Error::Relay(format!("NATS: {e}"))
}

/// The stream the relay publishes a ledger's events into: its subjects, kept on disk.
pub fn stream_config(ledger: &LedgerName) -> stream::Config {
    stream::Config {
        name: stream_name(ledger),
        subjects: vec![format!("{}.>", subject_prefix(ledger))],
        storage: stream::StorageType::File,
        ..stream::Config::default()
    }
}

impl NatsSink {
    /// Connects to publish `ledger`'s events, creating its stream if it is not there (and
    /// moving `LEDGER`'s subjects from before there were many ledgers to `default`'s).
    pub async fn connect(url: &str, ledger: &LedgerName) -> Result<Self> {
        let client = async_nats::connect(url).await.map_err(broker)?;
        let jetstream = jetstream::new(client.clone());
        let config = stream_config(ledger);
        let stream = jetstream
            .get_or_create_stream(config.clone())
            .await
            .map_err(broker)?;
        if stream.cached_info().config.subjects != config.subjects {
            let mut updated = stream.cached_info().config.clone();
            updated.subjects = config.subjects;
            jetstream.update_stream(updated).await.map_err(broker)?;
        }
        Ok(Self {
            client,
            jetstream,
            ledger: ledger.clone(),
            stream: config.name,
            chain: None,
        })
    }

    /// Where to resume from the relay's `checkpoint`: after the stream's last message when every
    /// position from the checkpoint to it is at the stream's end in order, else the checkpoint.
    /// Chains what is published next when it all comes after what the stream holds.
    pub async fn resume(&mut self, checkpoint: i64) -> Result<Resume> {
        let mut stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(broker)?;
        let state = stream.info().await.map_err(broker)?.state.clone();
        if state.last_sequence == 0 || state.messages == 0 {
            self.chain = Some((checkpoint, state.last_sequence));
            return Ok(Resume::after(checkpoint));
        }
        let last = position_of(&stream, &self.ledger, state.last_sequence).await?;
        if last <= checkpoint {
            self.chain = Some((checkpoint, state.last_sequence));
            return Ok(Resume::after(checkpoint));
        }
        if let Err(why) = tail_holds(&stream, &self.ledger, &state, checkpoint, last).await {
            warn!(stream = %self.stream, checkpoint, last, %why, "NATS: the stream holds \
                position {last} but not every one after the relay's checkpoint; resuming from the \
                checkpoint");
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
        headers.insert(
            NATS_MESSAGE_ID,
            message_id(&self.ledger, message.position).as_str(),
        );
        if let Some((after, sequence)) = self.chain.filter(|(after, _)| message.position > *after) {
            // The relay publishes consecutive positions from `after + 1`, each to be stored as the
            // stream's next message (0: the stream never had one, nothing to check).
            let expected = sequence + (message.position - after - 1) as u64;
            if expected > 0 {
                headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
            }
        }
        let subject = format!("{}.{}", subject_prefix(&self.ledger), message.event_type);
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

/// The position of the message at `sequence`: its `Nats-Msg-Id`, `<ledger>:<position>` (or, in
/// `default`'s stream, the bare position it had before there were many ledgers).
async fn position_of(stream: &stream::Stream, ledger: &LedgerName, sequence: u64) -> Result<i64> {
    let message = stream.get_raw_message(sequence).await.map_err(broker)?;
    let id = message
        .headers
        .get(NATS_MESSAGE_ID)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let position = match id
        .strip_prefix(ledger.as_str())
        .and_then(|r| r.strip_prefix(':'))
    {
        Some(position) => Some(position),
        None if ledger.is_default() => Some(id.as_str()),
        None => None,
    };
    position.and_then(|p| p.parse::<i64>().ok()).ok_or_else(|| {
        Error::Relay(format!(
            "NATS: the message of {} at sequence {sequence} has no position of ledger {ledger} as \
             its Nats-Msg-Id ({id:?}): is something else publishing to {}.>?",
            stream_name(ledger),
            subject_prefix(ledger)
        ))
    })
}

/// Whether the stream's last `last - checkpoint` messages are the positions after `checkpoint`
/// up to `last`, in order: everything up to the checkpoint the broker confirmed, so then the
/// stream holds every position up to `last`. Why not, if not.
async fn tail_holds(
    stream: &stream::Stream,
    ledger: &LedgerName,
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
        match position_of(stream, ledger, sequence).await {
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
