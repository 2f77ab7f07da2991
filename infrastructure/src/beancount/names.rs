//! How the ledger's account and asset codes become Beancount names, injectively: two codes never
//! share a name (characters Beancount does not allow are escaped, never dropped), so balances
//! cannot merge in the export.
//!
//! An account code's segments (`[a-z0-9_-]+`, joined by `:`) become components under the root:
//! - a leading letter is capitalised, a leading digit kept (`alice:cash` → `Assets:Alice:Cash`);
//! - after it, letters and digits are kept, `_` before a letter capitalises that letter
//!   (`petty_cash` → `PettyCash`), any other `_` is written `-U` and `-` is written `--`
//!   (`a-b_1` → `A--b-U1`);
//! - a segment that starts with `_` or `-` is written `0-X` followed by the whole segment under
//!   the rule above (`_tmp` → `0-XTmp`, `-x` → `0-X--x`).
//!
//! The rule is a prefix code: after a component's first character, every upper-case letter means
//! "`_` and this letter", and a `-` is always followed by `-` or `U`, so `-X` (only ever after the
//! leading `0`) marks the escaped form. A name therefore reads back to exactly one code.
//!
//! An asset code (`[A-Z0-9_]{1,16}`) is its own commodity name when Beancount's lexer reads it as
//! one: at least two characters, a letter first, a letter or digit last, and not one of the
//! keywords `TRUE`, `FALSE`, `NULL`. Any other code is written `X.<code>.X` (`1INCH` →
//! `X.1INCH.X`, `EUR_` → `X.EUR_.X`, `X` → `X.X.X`): no plain name holds a `.`, and at most 20
//! characters keeps within Beancount's 24.

use std::fmt;
use std::str::FromStr;

use domain::{AccountCode, AssetCode};

/// The Beancount root every exported account is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Root {
    #[default]
    Assets,
    Liabilities,
    Equity,
    Income,
    Expenses,
}

impl Root {
    pub const ALL: [Root; 5] = [
        Root::Assets,
        Root::Liabilities,
        Root::Equity,
        Root::Income,
        Root::Expenses,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Root::Assets => "Assets",
            Root::Liabilities => "Liabilities",
            Root::Equity => "Equity",
            Root::Income => "Income",
            Root::Expenses => "Expenses",
        }
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Root {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Root::ALL
            .into_iter()
            .find(|root| root.as_str() == text)
            .ok_or_else(|| {
                format!("{text:?} is not a Beancount root: use Assets, Liabilities, Equity, Income or Expenses")
            })
    }
}

/// What a component starts with when its segment starts with `_` or `-`.
const ESCAPED_SEGMENT_PREFIX: &str = "0-X";
/// What `-` and a `_` that is not followed by a letter become after a component's first character.
const DASH: &str = "--";
const LONE_UNDERSCORE: &str = "-U";

/// Words Beancount's lexer reads as values, not as commodities.
const COMMODITY_KEYWORDS: [&str; 3] = ["TRUE", "FALSE", "NULL"];

/// The Beancount account of a ledger account, under `root`.
pub fn account_name(root: Root, code: &AccountCode) -> String {
    let mut name = String::from(root.as_str());
    for segment in code.as_str().split(':') {
        name.push(':');
        push_component(&mut name, segment.as_bytes());
    }
    name
}

fn push_component(name: &mut String, segment: &[u8]) {
    let rest = match segment.first() {
        Some(first) if first.is_ascii_lowercase() => {
            name.push(char::from(first.to_ascii_uppercase()));
            &segment[1..]
        }
        Some(first) if first.is_ascii_digit() => {
            name.push(char::from(*first));
            &segment[1..]
        }
        _ => {
            name.push_str(ESCAPED_SEGMENT_PREFIX);
            segment
        }
    };
    let mut i = 0;
    while i < rest.len() {
        match (rest[i], rest.get(i + 1)) {
            (b'_', Some(next)) if next.is_ascii_lowercase() => {
                name.push(char::from(next.to_ascii_uppercase()));
                i += 1;
            }
            (b'_', _) => name.push_str(LONE_UNDERSCORE),
            (b'-', _) => name.push_str(DASH),
            (other, _) => name.push(char::from(other)),
        }
        i += 1;
    }
}

/// The income account of an account's realized P&L in an instrument: `Income:Realized-PnL`,
/// then the account's components, then the instrument's code in lower case as a component under
/// the same rule (`alice:cash`, `AAPL` → `Income:Realized-PnL:Alice:Cash:Aapl`; asset codes in
/// lower case are segments, so two instruments never share a name).
pub fn realized_name(code: &AccountCode, instrument: &AssetCode) -> String {
    let mut name = format!("{}:{REALIZED}", Root::Income);
    for segment in code.as_str().split(':') {
        name.push(':');
        push_component(&mut name, segment.as_bytes());
    }
    name.push(':');
    push_component(
        &mut name,
        instrument.as_str().to_ascii_lowercase().as_bytes(),
    );
    name
}

/// The components of the export's own accounts: none is the name of a segment (a `-` followed by
/// an upper-case letter never is), so no ledger account, under any root, has these names.
const REALIZED: &str = "Realized-PnL";
/// Where the fees in costs and proceeds go, which the weights of an entry count twice
/// (`super` says why).
pub const FEES_IN_COST: &str = "Equity:Ledger:Fees-In-Cost";
/// Through which an entry's legs written apart balance (`super`).
pub const LOT_CLEARING: &str = "Equity:Ledger:Lot-Clearing";

/// The Beancount commodity of a ledger asset.
pub fn commodity_name(code: &AssetCode) -> String {
    let text = code.as_str();
    let bytes = text.as_bytes();
    let read_as_commodity = bytes.len() >= 2
        && bytes[0].is_ascii_uppercase()
        && bytes[bytes.len() - 1] != b'_'
        && !COMMODITY_KEYWORDS.contains(&text);
    if read_as_commodity {
        text.to_owned()
    } else {
        format!("X.{text}.X")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Reads a component back to its segment: the inverse the module's documentation describes.
    fn segment_of(component: &str) -> Option<String> {
        let (mut segment, rest) = if let Some(rest) = component.strip_prefix(ESCAPED_SEGMENT_PREFIX)
        {
            (String::new(), rest)
        } else {
            let first = component.chars().next()?;
            (
                first.to_ascii_lowercase().to_string(),
                &component[first.len_utf8()..],
            )
        };
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                'A'..='Z' => {
                    segment.push('_');
                    segment.push(c.to_ascii_lowercase());
                }
                '-' => match chars.next()? {
                    '-' => segment.push('-'),
                    'U' => segment.push('_'),
                    _ => return None,
                },
                _ => segment.push(c),
            }
        }
        Some(segment)
    }

    /// Beancount's rule for a component after the root.
    fn is_beancount_component(component: &str) -> bool {
        let mut chars = component.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
    }

    /// Beancount's rule for a commodity, with the lexer's exceptions.
    fn is_beancount_commodity(name: &str) -> bool {
        let bytes = name.as_bytes();
        (2..=24).contains(&bytes.len())
            && bytes[0].is_ascii_uppercase()
            && (bytes[bytes.len() - 1].is_ascii_uppercase()
                || bytes[bytes.len() - 1].is_ascii_digit())
            && bytes[1..bytes.len() - 1]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"'._-".contains(b))
            && !COMMODITY_KEYWORDS.contains(&name)
    }

    /// Every string of 1 to `len_max` characters of `alphabet`.
    fn strings(alphabet: &[u8], len_max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len_max {
            last = last
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |&c| {
                        let mut longer = s.clone();
                        longer.push(char::from(c));
                        longer
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all.retain(|s| !s.is_empty());
        all
    }

    #[test]
    fn every_account_code_maps_to_its_own_valid_beancount_account() {
        // Every segment of up to 5 characters over letters that matter to the rule (the
        // escape letters u and x among them), digits, `_` and `-`, alone and in pairs.
        let segments = strings(b"auxz09_-", 5);
        let mut codes: Vec<String> = segments.clone();
        for first in segments.iter().step_by(397) {
            for second in segments.iter().step_by(389) {
                codes.push(format!("{first}:{second}"));
            }
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        for text in codes {
            let Ok(code) = AccountCode::try_from(text.clone()) else {
                continue;
            };
            let name = account_name(Root::Liabilities, &code);
            let components: Vec<&str> = name.split(':').collect();
            assert_eq!(components[0], "Liabilities");
            for component in &components[1..] {
                assert!(is_beancount_component(component), "{text} → {name}");
            }
            let back: Option<Vec<String>> = components[1..].iter().map(|c| segment_of(c)).collect();
            assert_eq!(back.map(|s| s.join(":")), Some(text.clone()), "{name}");
            if let Some(other) = seen.insert(name.clone(), text.clone()) {
                panic!("{other} and {text} both map to {name}");
            }
        }
        assert!(seen.len() > 30_000, "{} codes checked", seen.len());
    }

    #[test]
    fn account_names_read_like_the_codes() {
        let name = |code: &str| account_name(Root::Assets, &code.parse().unwrap());
        assert_eq!(name("alice:cash"), "Assets:Alice:Cash");
        assert_eq!(name("world:bank"), "Assets:World:Bank");
        assert_eq!(name("user:0"), "Assets:User:0");
        assert_eq!(name("petty_cash:eur_2"), "Assets:PettyCash:Eur-U2");
        assert_eq!(name("a-b_c:0"), "Assets:A--bC:0");
        assert_eq!(name("_tmp:-x"), "Assets:0-XTmp:0-X--x");
        assert_eq!(name("__"), "Assets:0-X-U-U");
    }

    #[test]
    fn every_asset_code_maps_to_its_own_valid_commodity() {
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut codes = strings(b"AXZ09_", 4);
        codes.extend(COMMODITY_KEYWORDS.map(str::to_owned));
        codes.push("ABCDEFGHIJKLMNO_".to_owned());
        for text in codes {
            let code = AssetCode::try_from(text.clone()).unwrap();
            let name = commodity_name(&code);
            assert!(is_beancount_commodity(&name), "{text} → {name}");
            let back = name
                .strip_prefix("X.")
                .and_then(|n| n.strip_suffix(".X"))
                .unwrap_or(&name);
            assert_eq!(back, text);
            if let Some(other) = seen.insert(name.clone(), text.clone()) {
                panic!("{other} and {text} both map to {name}");
            }
        }
        assert_eq!(commodity_name(&"USD".parse().unwrap()), "USD");
        assert_eq!(commodity_name(&"1INCH".parse().unwrap()), "X.1INCH.X");
        assert_eq!(commodity_name(&"TRUE".parse().unwrap()), "X.TRUE.X");
    }

    #[test]
    fn the_exports_own_accounts_are_no_ledger_accounts() {
        let name = realized_name(&"alice:cash".parse().unwrap(), &"AAPL".parse().unwrap());
        assert_eq!(name, "Income:Realized-PnL:Alice:Cash:Aapl");
        let odd = realized_name(&"_x".parse().unwrap(), &"EUR_".parse().unwrap());
        assert_eq!(odd, "Income:Realized-PnL:0-XX:Eur-U");
        for own in [REALIZED, "Fees-In-Cost", "Lot-Clearing"] {
            assert_eq!(segment_of(own), None, "{own}");
            assert!(is_beancount_component(own), "{own}");
        }
    }

    #[test]
    fn roots_are_beancounts_five() {
        for root in Root::ALL {
            assert_eq!(root.as_str().parse::<Root>(), Ok(root));
        }
        assert!("assets".parse::<Root>().is_err());
    }
}
