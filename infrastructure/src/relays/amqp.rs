//! The relay's RabbitMQ side (AMQP 0-9-1): a durable topic exchange `ledger.events`, persistent
//! messages, publisher confirms. The routing key is `<ledger>.<EventType>.<root>.<root>…`, the
//! first segment of each account the event touches, so a queue bound with `default.#`,
//! `*.TransactionPosted.#` or `#.alice.#` gets what it asks for; `message_id` is
//! `<ledger>:<position>`.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use domain::LedgerName;

use super::{Confirm, Message};
use crate::{Error, Result};

/// The exchange every event is published to.
pub const EXCHANGE: &str = "ledger.events";

/// AMQP's limit on a routing key (a short string). Roots that do not fit are left out of the
/// key (never the event type); the body always names every account.
pub const ROUTING_KEY_BYTES_MAX: usize = 255;

/// AMQP's persistent delivery mode: the broker writes the message to disk before it confirms.
const PERSISTENT: u8 = 2;

pub struct AmqpSink {
    connection: Connection,
    channel: Channel,
    ledger: LedgerName,
}

fn broker(e: lapin::Error) -> Error {
    Error::Relay(format!("RabbitMQ: {e}"))
}

impl AmqpSink {
    /// Connects to publish `ledger`'s events.
    pub async fn connect(url: &str, ledger: &LedgerName) -> Result<Self> {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(broker)?;
        let channel = connection.create_channel().await.map_err(broker)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(broker)?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        Ok(Self {
            connection,
            channel,
            ledger: ledger.clone(),
        })
    }

    pub async fn publish(&mut self, message: &Message<'_>) -> Result<Confirm> {
        let properties = BasicProperties::default()
            .with_message_id(format!("{}:{}", self.ledger, message.position).into())
            .with_type(message.event_type.into())
            .with_content_type("application/json".into())
            .with_delivery_mode(PERSISTENT);
        let confirm = self
            .channel
            .basic_publish(
                EXCHANGE.into(),
                routing_key(&self.ledger, message.event_type, &message.account_roots).into(),
                BasicPublishOptions::default(),
                &message.body,
                properties,
            )
            .await
            .map_err(broker)?;
        let position = message.position;
        let ledger = self.ledger.clone();
        Ok(Box::pin(async move {
            let confirmation = confirm.await.map_err(broker)?;
            if confirmation.is_ack() {
                Ok(())
            } else {
                Err(Error::Relay(format!(
                    "RabbitMQ refused the event of ledger {ledger} at {position}"
                )))
            }
        }))
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "relay stopping".into()).await;
        let _ = self.connection.close(200, "relay stopping".into()).await;
    }
}

/// `<ledger>.<EventType>.<root>.<root>…`, within AMQP's limit (a ledger's name and an event
/// type always fit).
pub fn routing_key(ledger: &LedgerName, event_type: &str, account_roots: &[&str]) -> String {
    let mut key = format!("{ledger}.{event_type}");
    for root in account_roots {
        if key.len() + 1 + root.len() > ROUTING_KEY_BYTES_MAX {
            break;
        }
        key.push('.');
        key.push_str(root);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(name: &str) -> LedgerName {
        name.parse().unwrap()
    }

    #[test]
    fn the_routing_key_names_the_ledger_the_type_then_each_account_root() {
        assert_eq!(
            routing_key(&ledger("default"), "TransactionPosted", &["world", "alice"]),
            "default.TransactionPosted.world.alice"
        );
        assert_eq!(
            routing_key(&ledger("fund-a"), "AssetDefined", &[]),
            "fund-a.AssetDefined"
        );
    }

    #[test]
    fn a_routing_key_never_exceeds_amqps_limit() {
        let long = "r".repeat(100);
        let roots = [long.as_str(); 5];
        let name = "l".repeat(LedgerName::MAX_LEN);
        let key = routing_key(&ledger(&name), "TradeExecuted", &roots);
        assert!(key.len() <= ROUTING_KEY_BYTES_MAX);
        assert!(key.starts_with(&format!("{name}.TradeExecuted.")));
    }
}
