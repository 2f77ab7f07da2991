//! Which events a subscription receives: by type, and by the accounts they touch. Pure.

use domain::{AccountCode, Event};

/// Event types a subscription may name.
pub const EVENT_TYPES: [&str; 13] = [
    Event::ASSET_DEFINED,
    Event::ACCOUNT_OPENED,
    Event::TRANSACTION_POSTED,
    Event::TRADE_EXECUTED,
    Event::ACCOUNT_STATUS_CHANGED,
    Event::ACCOUNT_LIMITS_SET,
    Event::PENDING_POSTED,
    Event::PENDING_VOIDED,
    Event::PENDING_EXPIRED,
    Event::PERIOD_CLOSED,
    Event::PERIOD_REOPENED,
    Event::BOOKING_METHOD_SET,
    Event::PRICE_MARKED,
];

/// A subscription's filters. Both must match; an empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event type names; empty: every type.
    pub event_types: Vec<String>,
    /// Account code segments (`alice`, `alice:cash`): an event matches when an account it
    /// touches is that account or one under it (`alice` matches `alice:cash`, not `alicia:cash`).
    /// An event that touches no account (`AssetDefined`) never matches a prefix.
    pub account_prefix: Option<String>,
}

/// Why a filter cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(String);

impl Filter {
    /// Checks the names and the prefix; the type names are sorted and deduplicated.
    pub fn new(
        mut event_types: Vec<String>,
        account_prefix: Option<String>,
    ) -> Result<Self, BadFilter> {
        if let Some(unknown) = event_types
            .iter()
            .find(|t| !EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(BadFilter(format!(
                "event_types: {unknown:?} is not an event type (one of {})",
                EVENT_TYPES.join(", ")
            )));
        }
        event_types.sort();
        event_types.dedup();
        if let Some(prefix) = &account_prefix {
            AccountCode::try_from(prefix.clone())
                .map_err(|e| BadFilter(format!("account_prefix: {e}")))?;
        }
        Ok(Self {
            event_types,
            account_prefix,
        })
    }

    pub fn matches(&self, event: &Event) -> bool {
        let type_matches =
            self.event_types.is_empty() || self.event_types.iter().any(|t| t == event.event_type());
        let account_matches = match &self.account_prefix {
            None => true,
            Some(prefix) => accounts_touched(event).any(|code| under(code.as_str(), prefix)),
        };
        type_matches && account_matches
    }
}

/// Whether `code` is `prefix` or below it, segment by segment.
fn under(code: &str, prefix: &str) -> bool {
    code.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

/// Every account an event names: the one it opens or changes, and each side of every posting it
/// reserves, moves or releases.
pub fn accounts_touched(event: &Event) -> impl Iterator<Item = &AccountCode> {
    let postings = event.postings().iter().chain(event.released());
    event
        .account_changed()
        .into_iter()
        .chain(postings.flat_map(|p| [&p.source, &p.destination]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn transfer(source: &str, destination: &str) -> Event {
        let posting =
            json!({"source": source, "destination": destination, "asset": "USD", "amount": "1"});
        let payload = json!({"transaction_id": "0190a0b0-0000-7000-8000-000000000001",
            "kind": "transfer", "postings": [posting], "metadata": {}});
        Event::decode(Event::TRANSACTION_POSTED, 1, &payload.to_string()).unwrap()
    }

    fn opened(account: &str) -> Event {
        let payload = json!({"account_id": "0190a0b0-0000-7000-8000-000000000002",
            "code": account, "allow_negative": false, "metadata": {}});
        Event::decode(Event::ACCOUNT_OPENED, 1, &payload.to_string()).unwrap()
    }

    fn filter(types: &[&str], prefix: Option<&str>) -> Filter {
        Filter::new(
            types.iter().map(|t| t.to_string()).collect(),
            prefix.map(str::to_owned),
        )
        .unwrap()
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        assert!(Filter::default().matches(&transfer("a:x", "b:y")));
        assert!(Filter::default().matches(&opened("a")));
    }

    #[test]
    fn types_match_by_name() {
        let f = filter(&["AccountOpened"], None);
        assert!(f.matches(&opened("a")));
        assert!(!f.matches(&transfer("a:x", "b:y")));
    }

    #[test]
    fn a_prefix_matches_whole_segments_of_any_account_touched() {
        let f = filter(&[], Some("alice"));
        assert!(f.matches(&transfer("world:bank", "alice:cash")));
        assert!(f.matches(&transfer("alice", "bob:cash")));
        assert!(f.matches(&opened("alice:savings")));
        assert!(!f.matches(&transfer("alicia:cash", "bob:cash")));
        assert!(!f.matches(&opened("bob:alice")));
        let asset = Event::decode(Event::ASSET_DEFINED, 1, r#"{"asset":"USD","scale":2}"#).unwrap();
        assert!(!f.matches(&asset));
        let both = filter(&["TransactionPosted"], Some("alice:cash"));
        assert!(both.matches(&transfer("alice:cash", "bob:cash")));
        assert!(!both.matches(&opened("alice:cash")));
    }

    #[test]
    fn closes_and_reopens_may_be_named() {
        let f = filter(&["PeriodClosed", "PeriodReopened"], None);
        let reopened = Event::decode(
            Event::PERIOD_REOPENED,
            1,
            r#"{"period":1,"reason":"late invoice","metadata":{}}"#,
        )
        .unwrap();
        assert!(f.matches(&reopened));
        assert!(!f.matches(&transfer("a:x", "b:y")));
        // A close touches no account: a prefix filter never matches it.
        assert!(!filter(&[], Some("a")).matches(&reopened));
    }

    #[test]
    fn unknown_types_and_malformed_prefixes_are_refused() {
        assert!(Filter::new(vec!["Nope".into()], None).is_err());
        assert!(Filter::new(vec![], Some("Alice".into())).is_err());
        assert!(Filter::new(vec![], Some("alice:".into())).is_err());
        let f = filter(&["TradeExecuted", "AccountOpened", "TradeExecuted"], None);
        assert_eq!(f.event_types, ["AccountOpened", "TradeExecuted"]);
    }
}
