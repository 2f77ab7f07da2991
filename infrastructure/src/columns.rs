//! Rows gathered as columns and written with one array insert per table: `INSERT … SELECT FROM
//! UNNEST($1::…[], $2::…[], …)`. A table is declared once, as its name and typed columns; the SQL
//! and the binds are both generated from that declaration, in the same order, so no parameter is
//! numbered by hand and adding a column is one line.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// A column's PostgreSQL type. `Jsonb` travels as text and is cast in the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Int2,
    Int8,
    Uuid,
    Text,
    Jsonb,
    Numeric,
    Bool,
    Timestamptz,
    Date,
    Bytea,
}

impl SqlType {
    /// The array type the column's values are bound as.
    fn array(self) -> &'static str {
        match self {
            Self::Int2 => "int2[]",
            Self::Int8 => "int8[]",
            Self::Uuid => "uuid[]",
            Self::Text | Self::Jsonb => "text[]",
            Self::Numeric => "numeric[]",
            Self::Bool => "bool[]",
            Self::Timestamptz => "timestamptz[]",
            Self::Date => "date[]",
            Self::Bytea => "bytea[]",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: SqlType,
}

/// Shorthand for a column declaration.
pub const fn col(name: &'static str, ty: SqlType) -> Column {
    Column { name, ty }
}

/// What an insert does with a row whose key is already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Nothing may conflict: a conflict is an error (the table is insert-only).
    Refuse,
    /// The first `key_columns` columns are the key; a newer row replaces the other columns.
    /// Within one batch too, the last row pushed for a key wins.
    Update { key_columns: usize },
    /// The first `key_columns` columns are the key; the row already stored is kept.
    Keep { key_columns: usize },
    /// The first `key_columns` columns are the key; the other columns (numbers) are amounts
    /// added to what is stored. Within one batch too, rows for one key are added up.
    Add { key_columns: usize },
}

/// A table as the rows written to it see it.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub on_conflict: OnConflict,
}

impl Table {
    /// The insert of one batch of rows into `schema` (`SESSION_BOOK`: the book the session's
    /// search path names), with parameters numbered from `first`:
    /// one array per column, in declaration order.
    pub fn insert_sql(&self, schema: &str, first: usize) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        let mut arrays = String::new();
        let mut selected = String::new();
        for (i, column) in self.columns.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(arrays, "{sep}${}::{}", first + i, column.ty.array());
            let cast = if column.ty == SqlType::Jsonb {
                "::jsonb"
            } else {
                ""
            };
            let _ = write!(selected, "{sep}c{i}{cast}");
        }
        let aliases: Vec<String> = (0..self.columns.len()).map(|i| format!("c{i}")).collect();
        let conflict = match self.on_conflict {
            OnConflict::Refuse => String::new(),
            OnConflict::Keep { key_columns } => {
                format!(
                    " ON CONFLICT ({}) DO NOTHING",
                    names[..key_columns].join(", ")
                )
            }
            OnConflict::Update { key_columns } | OnConflict::Add { key_columns } => {
                let adding = matches!(self.on_conflict, OnConflict::Add { .. });
                let set: Vec<String> = names[key_columns..]
                    .iter()
                    .map(|n| match adding {
                        true => format!("{n} = stored.{n} + EXCLUDED.{n}"),
                        false => format!("{n} = EXCLUDED.{n}"),
                    })
                    .collect();
                format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    names[..key_columns].join(", "),
                    set.join(", ")
                )
            }
        };
        format!(
            "INSERT INTO {schema}{}{} AS stored ({}) SELECT {selected} FROM UNNEST({arrays}) AS u({}){conflict}",
            if schema.is_empty() { "" } else { "." },
            self.name,
            names.join(", "),
            aliases.join(", "),
        )
    }
}

impl Table {
    /// The delete of the rows matching one batch of keys from `schema`, with parameters
    /// numbered from `first`. The table is a key of another (`name` is that table's): its
    /// columns are the key columns to match, one array each, and a row goes when it matches
    /// every one of them for some key of the batch.
    pub fn delete_sql(&self, schema: &str, first: usize) -> String {
        let mut arrays = String::new();
        let mut matches = String::new();
        for (i, column) in self.columns.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let and = if i == 0 { "" } else { " AND " };
            let _ = write!(arrays, "{sep}${}::{}", first + i, column.ty.array());
            let _ = write!(matches, "{and}stored.{} = u.c{i}", column.name);
        }
        let aliases: Vec<String> = (0..self.columns.len()).map(|i| format!("c{i}")).collect();
        format!(
            "DELETE FROM {schema}{}{} AS stored USING UNNEST({arrays}) AS u({}) WHERE {matches}",
            if schema.is_empty() { "" } else { "." },
            self.name,
            aliases.join(", "),
        )
    }
}

/// The data-modifying CTEs that delete the rows matching the keys of several key tables from
/// `schema` in one statement, as `insert_ctes` inserts, and the number of the next parameter.
pub fn delete_ctes(keys: &[&'static Table], schema: &str) -> (String, usize) {
    let mut sql = String::new();
    let mut next = 1;
    for (i, table) in keys.iter().enumerate() {
        let sep = if i == 0 { "" } else { ",\n" };
        let _ = write!(sql, "{sep}d{i} AS ({})", table.delete_sql(schema, next));
        next += table.columns.len();
    }
    (sql, next)
}

/// One value of a row, converted from the Rust type of its column.
#[derive(Debug, Clone)]
pub enum Value {
    Int2(i16),
    Int8(i64),
    Uuid(Uuid),
    Text(String),
    Numeric(Decimal),
    Bool(bool),
    Timestamptz(DateTime<Utc>),
    Date(NaiveDate),
    Bytea(Vec<u8>),
    Null,
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v.into())
            }
        }
    )*};
}

value_from!(
    i16 => Int2, i64 => Int8, Uuid => Uuid, String => Text, &str => Text, Decimal => Numeric,
    bool => Bool, DateTime<Utc> => Timestamptz, NaiveDate => Date, Vec<u8> => Bytea,
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One column's values, bound as one array.
enum Values {
    Int2(Vec<Option<i16>>),
    Int8(Vec<Option<i64>>),
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<String>>),
    Numeric(Vec<Option<Decimal>>),
    Bool(Vec<Option<bool>>),
    Timestamptz(Vec<Option<DateTime<Utc>>>),
    Date(Vec<Option<NaiveDate>>),
    Bytea(Vec<Option<Vec<u8>>>),
}

impl Values {
    fn new(ty: SqlType) -> Self {
        match ty {
            SqlType::Int2 => Self::Int2(Vec::new()),
            SqlType::Int8 => Self::Int8(Vec::new()),
            SqlType::Uuid => Self::Uuid(Vec::new()),
            SqlType::Text | SqlType::Jsonb => Self::Text(Vec::new()),
            SqlType::Numeric => Self::Numeric(Vec::new()),
            SqlType::Bool => Self::Bool(Vec::new()),
            SqlType::Timestamptz => Self::Timestamptz(Vec::new()),
            SqlType::Date => Self::Date(Vec::new()),
            SqlType::Bytea => Self::Bytea(Vec::new()),
        }
    }

    /// Appends a value. A value of another type than the column's is a bug in a projection: it
    /// is stored as NULL, which every NOT NULL column refuses, so the batch fails with an error
    /// (and commits nothing) instead of writing a wrong row.
    fn push(&mut self, value: Value) {
        match (self, value) {
            (Self::Int2(c), Value::Int2(v)) => c.push(Some(v)),
            (Self::Int8(c), Value::Int8(v)) => c.push(Some(v)),
            (Self::Uuid(c), Value::Uuid(v)) => c.push(Some(v)),
            (Self::Text(c), Value::Text(v)) => c.push(Some(v)),
            (Self::Numeric(c), Value::Numeric(v)) => c.push(Some(v)),
            (Self::Bool(c), Value::Bool(v)) => c.push(Some(v)),
            (Self::Timestamptz(c), Value::Timestamptz(v)) => c.push(Some(v)),
            (Self::Date(c), Value::Date(v)) => c.push(Some(v)),
            (Self::Bytea(c), Value::Bytea(v)) => c.push(Some(v)),
            (column, value) => {
                debug_assert!(
                    matches!(value, Value::Null),
                    "{value:?} in the wrong column"
                );
                column.push_null();
            }
        }
    }

    fn push_null(&mut self) {
        match self {
            Self::Int2(c) => c.push(None),
            Self::Int8(c) => c.push(None),
            Self::Uuid(c) => c.push(None),
            Self::Text(c) => c.push(None),
            Self::Numeric(c) => c.push(None),
            Self::Bool(c) => c.push(None),
            Self::Timestamptz(c) => c.push(None),
            Self::Date(c) => c.push(None),
            Self::Bytea(c) => c.push(None),
        }
    }

    /// Replaces the value at `index` (a newer row for the same key).
    fn replace(&mut self, index: usize, value: Value) {
        self.push(value);
        match self {
            Self::Int2(c) => drop(c.swap_remove(index)),
            Self::Int8(c) => drop(c.swap_remove(index)),
            Self::Uuid(c) => drop(c.swap_remove(index)),
            Self::Text(c) => drop(c.swap_remove(index)),
            Self::Numeric(c) => drop(c.swap_remove(index)),
            Self::Bool(c) => drop(c.swap_remove(index)),
            Self::Timestamptz(c) => drop(c.swap_remove(index)),
            Self::Date(c) => drop(c.swap_remove(index)),
            Self::Bytea(c) => drop(c.swap_remove(index)),
        }
    }

    /// Adds `value` to the amount at `index` (a later row for the same key of an adding table).
    /// Only amounts add up; a value of another type is a bug in a projection, stored as NULL so
    /// that the batch fails rather than writes a wrong sum.
    fn add(&mut self, index: usize, value: Value) {
        match (self, value) {
            (Self::Numeric(c), Value::Numeric(v)) => c[index] = c[index].map(|sum| sum + v),
            (Self::Int8(c), Value::Int8(v)) => c[index] = c[index].map(|sum| sum + v),
            (column, _) => {
                debug_assert!(false, "only numeric and int8 amounts add up");
                column.replace(index, Value::Null);
            }
        }
    }

    /// Whether the value at `index` is `value`.
    fn holds(&self, index: usize, value: &Value) -> bool {
        match (self, value) {
            (Self::Int2(c), Value::Int2(v)) => c[index] == Some(*v),
            (Self::Int8(c), Value::Int8(v)) => c[index] == Some(*v),
            (Self::Uuid(c), Value::Uuid(v)) => c[index] == Some(*v),
            (Self::Text(c), Value::Text(v)) => c[index].as_deref() == Some(v.as_str()),
            (Self::Numeric(c), Value::Numeric(v)) => c[index] == Some(*v),
            (Self::Bool(c), Value::Bool(v)) => c[index] == Some(*v),
            (Self::Timestamptz(c), Value::Timestamptz(v)) => c[index] == Some(*v),
            (Self::Date(c), Value::Date(v)) => c[index] == Some(*v),
            (Self::Bytea(c), Value::Bytea(v)) => c[index].as_deref() == Some(v.as_slice()),
            (column, Value::Null) => column.is_null(index),
            _ => false,
        }
    }

    fn is_null(&self, index: usize) -> bool {
        match self {
            Self::Int2(c) => c[index].is_none(),
            Self::Int8(c) => c[index].is_none(),
            Self::Uuid(c) => c[index].is_none(),
            Self::Text(c) => c[index].is_none(),
            Self::Numeric(c) => c[index].is_none(),
            Self::Bool(c) => c[index].is_none(),
            Self::Timestamptz(c) => c[index].is_none(),
            Self::Date(c) => c[index].is_none(),
            Self::Bytea(c) => c[index].is_none(),
        }
    }

    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        match self {
            Self::Int2(c) => query.bind(c),
            Self::Int8(c) => query.bind(c),
            Self::Uuid(c) => query.bind(c),
            Self::Text(c) => query.bind(c),
            Self::Numeric(c) => query.bind(c),
            Self::Bool(c) => query.bind(c),
            Self::Timestamptz(c) => query.bind(c),
            Self::Date(c) => query.bind(c),
            Self::Bytea(c) => query.bind(c),
        }
    }
}

/// The rows of one table gathered so far, as columns.
pub struct TableRows {
    table: &'static Table,
    columns: Vec<Values>,
    len: usize,
    /// For a table with a key that a later row replaces: the rows by a hash of their key (a
    /// hit is compared in full, so a collision costs a scan, never a wrong row).
    rows_by_key: HashMap<u64, usize>,
}

impl TableRows {
    pub fn new(table: &'static Table) -> Self {
        Self {
            table,
            columns: table.columns.iter().map(|c| Values::new(c.ty)).collect(),
            len: 0,
            rows_by_key: HashMap::new(),
        }
    }

    pub fn table(&self) -> &'static Table {
        self.table
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a row, its values in the table's column order. In a table whose rows are updated
    /// by key, a row whose key was pushed before replaces that row; in an adding table, its
    /// amounts are added to that row's.
    pub fn push<const N: usize>(&mut self, row: [Value; N]) {
        debug_assert_eq!(N, self.columns.len(), "a row of {}", self.table.name);
        let keyed = match self.table.on_conflict {
            OnConflict::Update { key_columns } | OnConflict::Add { key_columns } => {
                Some(key_columns)
            }
            OnConflict::Refuse | OnConflict::Keep { .. } => None,
        };
        if let Some(key_columns) = keyed {
            let key = &row[..key_columns];
            let hash = key_hash(key);
            let earlier = match self.rows_by_key.get(&hash) {
                Some(&index) if self.key_at(index, key) => Some(index),
                Some(_) => (0..self.len).find(|&index| self.key_at(index, key)),
                None => None,
            };
            if let Some(index) = earlier {
                let adding = matches!(self.table.on_conflict, OnConflict::Add { .. });
                for (i, (column, value)) in self.columns.iter_mut().zip(row).enumerate() {
                    match adding && i >= key_columns {
                        true => column.add(index, value),
                        false => column.replace(index, value),
                    }
                }
                return;
            }
            self.rows_by_key.entry(hash).or_insert(self.len);
        }
        for (column, value) in self.columns.iter_mut().zip(row) {
            column.push(value);
        }
        self.len += 1;
    }

    /// Whether the row at `index` has the key `key` (its first columns).
    fn key_at(&self, index: usize, key: &[Value]) -> bool {
        self.columns
            .iter()
            .zip(key)
            .all(|(column, value)| column.holds(index, value))
    }

    /// Binds every column, in the order `Table::insert_sql` numbers them.
    pub fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        self.columns
            .iter()
            .fold(query, |query, column| column.bind(query))
    }
}

fn key_hash(values: &[Value]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for value in values {
        match value {
            Value::Uuid(v) => v.hash(&mut hasher),
            Value::Text(v) => v.hash(&mut hasher),
            Value::Int8(v) => v.hash(&mut hasher),
            Value::Int2(v) => v.hash(&mut hasher),
            Value::Bool(v) => v.hash(&mut hasher),
            Value::Bytea(v) => v.hash(&mut hasher),
            Value::Numeric(v) => v.hash(&mut hasher),
            Value::Timestamptz(v) => v.hash(&mut hasher),
            Value::Date(v) => v.hash(&mut hasher),
            Value::Null => 0u8.hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// The schema argument that names no schema: the tables of the book the session's search path
/// names (see `ledgers`), which is how the writer, the projector and an import write a ledger's.
pub const SESSION_BOOK: &str = "";

/// The data-modifying CTEs that insert the rows of several tables into `schema` in one statement
/// (`t0 AS (INSERT …), t1 AS (…)`), parameters numbered in the order of `tables`, and the number
/// of the next parameter. Empty arrays insert nothing, so for a fixed list of tables the statement
/// is the same for every batch and is prepared once.
pub fn insert_ctes(tables: &[&'static Table], schema: &str) -> (String, usize) {
    let mut sql = String::new();
    let mut next = 1;
    for (i, table) in tables.iter().enumerate() {
        let sep = if i == 0 { "" } else { ",\n" };
        let _ = write!(sql, "{sep}t{i} AS ({})", table.insert_sql(schema, next));
        next += table.columns.len();
    }
    (sql, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    static BALANCES: Table = Table {
        name: "balances",
        columns: &[
            col("account_id", SqlType::Uuid),
            col("asset", SqlType::Text),
            col("balance", SqlType::Numeric),
            col("metadata", SqlType::Jsonb),
        ],
        on_conflict: OnConflict::Update { key_columns: 2 },
    };

    #[test]
    fn the_statement_numbers_every_column_in_order() {
        assert_eq!(
            BALANCES.insert_sql("public", 3),
            "INSERT INTO public.balances AS stored (account_id, asset, balance, metadata) \
             SELECT c0, c1, c2, c3::jsonb FROM UNNEST($3::uuid[], $4::text[], $5::numeric[], $6::text[]) \
             AS u(c0, c1, c2, c3) ON CONFLICT (account_id, asset) DO UPDATE SET \
             balance = EXCLUDED.balance, metadata = EXCLUDED.metadata"
        );
    }

    static BALANCE_KEYS: Table = Table {
        name: "balances",
        columns: &[
            col("account_id", SqlType::Uuid),
            col("asset", SqlType::Text),
        ],
        on_conflict: OnConflict::Refuse,
    };

    #[test]
    fn a_delete_matches_every_key_column() {
        assert_eq!(
            BALANCE_KEYS.delete_sql("", 4),
            "DELETE FROM balances AS stored USING UNNEST($4::uuid[], $5::text[]) AS u(c0, c1) \
             WHERE stored.account_id = u.c0 AND stored.asset = u.c1"
        );
    }

    static TOTALS: Table = Table {
        name: "totals",
        columns: &[
            col("prefix", SqlType::Text),
            col("amount", SqlType::Numeric),
            col("count", SqlType::Int8),
        ],
        on_conflict: OnConflict::Add { key_columns: 1 },
    };

    #[test]
    fn an_adding_table_adds_to_what_is_stored() {
        assert!(TOTALS.insert_sql("public", 1).ends_with(
            "ON CONFLICT (prefix) DO UPDATE SET amount = stored.amount + EXCLUDED.amount, \
             count = stored.count + EXCLUDED.count"
        ));
    }

    #[test]
    fn rows_for_the_same_key_of_an_adding_table_add_up() {
        let mut rows = TableRows::new(&TOTALS);
        rows.push(["a".into(), Decimal::new(125, 2).into(), 1i64.into()]);
        rows.push(["b".into(), Decimal::ONE.into(), 1i64.into()]);
        rows.push(["a".into(), Decimal::new(-25, 2).into(), 2i64.into()]);
        assert_eq!(rows.len(), 2);
        let (Values::Numeric(amounts), Values::Int8(counts)) = (&rows.columns[1], &rows.columns[2])
        else {
            panic!("numeric and int8 columns");
        };
        assert_eq!(amounts, &[Some(Decimal::new(100, 2)), Some(Decimal::ONE)]);
        assert_eq!(counts, &[Some(3), Some(1)]);
    }

    #[test]
    fn a_later_row_for_the_same_key_replaces_the_earlier() {
        let mut rows = TableRows::new(&BALANCES);
        let id = Uuid::nil();
        rows.push([id.into(), "USD".into(), Decimal::ONE.into(), "{}".into()]);
        rows.push([id.into(), "EUR".into(), Decimal::ONE.into(), "{}".into()]);
        rows.push([id.into(), "USD".into(), Decimal::TWO.into(), "{}".into()]);
        assert_eq!(rows.len(), 2);
        let Values::Numeric(balances) = &rows.columns[2] else {
            panic!("numeric column");
        };
        assert_eq!(balances, &[Some(Decimal::TWO), Some(Decimal::ONE)]);
    }
}
