//! The ledger's write path: a batch of rows and its hourly rollup, summed in memory,
//! inserted inside the caller's transaction. The statements' text never depends on the
//! batch, so each is prepared once per connection and reused from sqlx's cache. On
//! SQLite a batch's rows go through one multi-row statement of a fixed width (a chunk
//! of that many rows per execution; a shorter last chunk leaves the rest of its
//! parameters unbound, NULL, and those rows are filtered out) that binds the texts a
//! chunk's rows repeat (key, team, route, provider, model, tier, endpoint, catalog
//! version) once per distinct combination, not once per row; its rollup goes through
//! one such upsert. On PostgreSQL the rows go in one `COPY` and the rollup in one
//! upsert with one array per column.

use super::{
    Aggregate, Backend, LedgerError, LedgerRow, COLUMNS, HOUR_MS, N_COLUMNS, ROLLUP_COLUMNS,
};

/// Rows per INSERT statement on SQLite unless [`Ledger::set_rows_per_statement`] says
/// otherwise; `cargo bench --bench ledger` measures the choices.
///
/// [`Ledger::set_rows_per_statement`]: super::Ledger::set_rows_per_statement
pub const SQLITE_ROWS_PER_STATEMENT: usize = 128;

/// Rollup groups per upsert statement on SQLite (19 parameters each): a batch of the
/// default 500 rows from a few keys and models has a few dozen.
const SQLITE_GROUPS_PER_STATEMENT: usize = 32;

/// Distinct dimension combinations per joined SQLite INSERT (10 parameters each); a
/// chunk of rows ends before the row whose combination would not fit.
const SQLITE_DIMS_PER_STATEMENT: usize = 32;

/// Which of `COLUMNS` are a row's dimensions: the texts a batch's rows repeat (key name,
/// team, route, provider, model, tier, endpoint, catalog version, key id). On SQLite each
/// distinct combination is bound once per statement, and each row binds only its own
/// cells and the combination's place in the statement.
const DIMENSION: [bool; N_COLUMNS] = [
    false, false, true, true, true, true, true, true, true, false, false, false, false, false,
    false, false, true, false, false, false, false, false, false, true,
];
const N_DIMS: usize = 9;
/// A row's own cells, the columns that are not dimensions, in `COLUMNS` order.
const N_OWN: usize = N_COLUMNS - N_DIMS;

/// One value of a row as the write statements bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

/// A row's dimensions (`DIMENSION`), in `COLUMNS` order.
type Dims<'a> = [Option<&'a str>; N_DIMS];

fn row_dims(r: &LedgerRow) -> Dims<'_> {
    [
        Some(&r.key_name),
        r.team.as_deref(),
        Some(&r.route),
        Some(&r.provider),
        Some(&r.model),
        Some(&r.tier),
        Some(&r.endpoint),
        Some(&r.catalog_version),
        Some(&r.key_id),
    ]
}

/// Whether two texts are the same: a row's texts are mostly shared with the key's
/// settings and the catalog, so the same text is usually the same pointer.
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a == b)
}

/// Whether two rows' dimensions are the same texts.
fn same_dims(a: &Dims<'_>, b: &Dims<'_>) -> bool {
    a.iter().zip(b).all(|(a, b)| match (a, b) {
        (Some(a), Some(b)) => same_text(a, b),
        (None, None) => true,
        _ => false,
    })
}

/// A row's own cells: the columns that are not dimensions, in `COLUMNS` order.
fn own_cells(r: &LedgerRow) -> [Cell<'_>; N_OWN] {
    use Cell::{Int, Text};
    [
        Int(Some(r.ts_ms)),
        Text(Some(&r.request_id)),
        Int(Some(r.input_tokens)),
        Int(Some(r.cached_input_tokens)),
        Int(Some(r.cache_write_tokens)),
        Int(Some(r.output_tokens)),
        Int(Some(r.reasoning_tokens)),
        Int(r.cost_nanos),
        Int(r.baseline_cost_nanos),
        Int(Some(i64::from(r.estimated))),
        Int(Some(r.latency_ms)),
        Int(r.ttft_ms),
        Int(Some(i64::from(r.status))),
        Text(r.error_type.as_deref()),
        Int(Some(i64::from(r.fallbacks))),
    ]
}

/// A ledger row's cells, in `COLUMNS` order: its dimensions and its own cells where
/// `DIMENSION` puts them.
pub(super) fn row_cells(r: &LedgerRow) -> [Cell<'_>; N_COLUMNS] {
    let (mut dims, mut own) = (row_dims(r).into_iter(), own_cells(r).into_iter());
    DIMENSION.map(|dimension| {
        let cell = if dimension {
            dims.next().map(Cell::Text)
        } else {
            own.next()
        };
        cell.unwrap_or(Cell::Int(None))
    })
}

pub(super) const ROLLUP_KEY_COLUMNS: &str =
    "hour_ms, key_id, key_name, team, route, provider, model, tier";
const ROLLUP_WIDTH: usize = 19;

/// A rollup group's cells: `ROLLUP_KEY_COLUMNS`, then `ROLLUP_COLUMNS`.
fn rollup_cells<'a>(k: &RollupKey<'a>, a: &Aggregate) -> [Cell<'a>; ROLLUP_WIDTH] {
    use Cell::{Int, Text};
    let (hour, key_id, key, team, route, provider, model, tier) = *k;
    [
        Int(Some(hour)),
        Text(Some(key_id)),
        Text(Some(key)),
        Text(Some(team)),
        Text(Some(route)),
        Text(Some(provider)),
        Text(Some(model)),
        Text(Some(tier)),
        Int(Some(a.requests)),
        Int(Some(a.errors)),
        Int(Some(a.cost_nanos)),
        Int(Some(a.baseline_cost_nanos)),
        Int(Some(a.unpriced)),
        Int(Some(a.tokens[0])),
        Int(Some(a.tokens[1])),
        Int(Some(a.tokens[2])),
        Int(Some(a.tokens[3])),
        Int(Some(a.tokens[4])),
        Int(Some(a.fallbacks)),
    ]
}

#[cfg(test)]
pub(super) fn bind_cells<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    cells: impl IntoIterator<Item = Cell<'q>>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for cell in cells {
        q = match cell {
            Cell::Int(v) => q.bind(v),
            Cell::Text(v) => q.bind(v),
        };
    }
    q
}

/// One PostgreSQL array literal per column of `rows` (`{1,NULL}`, `{"a\"b",NULL}`), so a
/// batch binds one parameter per column however many rows it has.
fn pg_arrays<'a, const W: usize>(rows: impl Iterator<Item = [Cell<'a>; W]>) -> Vec<String> {
    let mut columns: Vec<String> = (0..W).map(|_| String::from("{")).collect();
    for cells in rows {
        for (column, cell) in columns.iter_mut().zip(cells) {
            if column.len() > 1 {
                column.push(',');
            }
            match cell {
                Cell::Int(Some(v)) => {
                    use std::fmt::Write;
                    let _ = write!(column, "{v}");
                }
                Cell::Text(Some(v)) => {
                    column.push('"');
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            column.push('\\');
                        }
                        column.push(c);
                    }
                    column.push('"');
                }
                Cell::Int(None) | Cell::Text(None) => column.push_str("NULL"),
            }
        }
    }
    for column in &mut columns {
        column.push('}');
    }
    columns
}

/// The write statements, built once per ledger. Their text does not change with the
/// batch size, so each is parsed once per connection and then reused from sqlx's
/// statement cache.
///
/// SQLite statements use anonymous `?` placeholders: for numbered ones (`$7`) sqlx's
/// SQLite driver asks SQLite each parameter's name, a linear scan of the statement's
/// parameter list, which makes binding quadratic in the parameters per statement.
#[derive(Debug)]
pub(super) struct WriteSql {
    /// SQLite: INSERTs of up to the configured rows per statement, narrowest first (see
    /// `Padded`), for a chunk whose rows share one dimension combination, bound once as
    /// the statement's first `N_DIMS` parameters, then each row's own cells.
    rows: Vec<Padded>,
    /// SQLite: the same for a chunk of up to `SQLITE_DIMS_PER_STATEMENT` combinations: each
    /// row binds its own cells and its combination's place, then the combinations are
    /// bound as (place, dimensions…) and joined to the rows.
    rows_joined: Vec<Padded>,
    /// SQLite: upserts of up to `SQLITE_GROUPS_PER_STATEMENT` rollup groups, likewise.
    rollups: Vec<Padded>,
    /// PostgreSQL: the whole batch in one `COPY … FROM STDIN` (text format).
    copy: String,
    /// PostgreSQL: every rollup group of the batch in one upsert.
    rollup: String,
}

impl WriteSql {
    pub(super) fn new(backend: Backend, rows_per_statement: usize) -> WriteSql {
        // `width` rows of `columns` parameters; SQLite names the columns of a VALUES
        // list column1, column2, …, and rows whose first parameter was left unbound
        // (NULL: every write binds a non-NULL first cell) are not inserted.
        let values = |columns: usize, width: usize| {
            let one = format!("({})", vec!["?"; columns].join(","));
            vec![one; width].join(",")
        };
        let padded = |columns: usize, width: usize| {
            format!(
                "SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL",
                values(columns, width)
            )
        };
        let unnest = |cells: &[Cell<'_>]| {
            let args: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| match c {
                    Cell::Int(_) => format!("${}::bigint[]", i + 1),
                    Cell::Text(_) => format!("${}::text[]", i + 1),
                })
                .collect();
            format!("SELECT * FROM UNNEST({})", args.join(", "))
        };
        let update: Vec<String> = ROLLUP_COLUMNS
            .split(", ")
            .map(|c| format!("{c} = ledger_hourly.{c} + excluded.{c}"))
            .collect();
        let upsert = |source: String| {
            format!(
                "INSERT INTO ledger_hourly ({ROLLUP_KEY_COLUMNS}, {ROLLUP_COLUMNS}) {source}
                 ON CONFLICT ({ROLLUP_KEY_COLUMNS}) DO UPDATE SET {}",
                update.join(", ")
            )
        };
        // Each column of `COLUMNS` from the rows' VALUES (`own`) or from the dimensions
        // (`dim`), both numbered from 1.
        let select = |own: &dyn Fn(usize) -> String, dim: &dyn Fn(usize) -> String| {
            let (mut o, mut d) = (0, 0);
            let list: Vec<String> = DIMENSION
                .iter()
                .map(|&dimension| {
                    if dimension {
                        d += 1;
                        dim(d)
                    } else {
                        o += 1;
                        own(o)
                    }
                })
                .collect();
            list.join(", ")
        };
        // `OR FAIL`: a constraint a row breaks (a NOT NULL column) ends the statement
        // without undoing its earlier rows, so SQLite keeps no statement journal (a copy
        // of each page the statement first touches, in every 128-row execution of a
        // batch's transaction); the error still fails the batch, whose transaction is then
        // rolled back whole.
        // One combination: its dimensions are the SELECT list's parameters, which come
        // first in the text and so are bound first.
        let shared = |w: usize| {
            format!(
                "INSERT OR FAIL INTO ledger ({COLUMNS}) SELECT {} FROM (VALUES {}) WHERE column1 IS NOT NULL",
                select(&|o| format!("column{o}"), &|_| "?".into()),
                values(N_OWN, w)
            )
        };
        // Several: the rows come first in the text, each with its combination's place
        // as its last cell, then the combinations (place, then dimensions), whose unused
        // rest is left unbound. CROSS JOIN keeps the rows as the outer loop (one pass, in
        // the batch's order); SQLite looks each row's combination up in an automatic
        // index on the materialized combinations.
        let joined = |w: usize| {
            format!(
                "INSERT OR FAIL INTO ledger ({COLUMNS}) SELECT {} FROM (VALUES {}) r
                 CROSS JOIN (VALUES {}) d ON d.column1 = r.column{} WHERE r.column1 IS NOT NULL",
                select(&|o| format!("r.column{o}"), &|d| format!(
                    "d.column{}",
                    d + 1
                )),
                values(N_OWN + 1, w),
                values(N_DIMS + 1, SQLITE_DIMS_PER_STATEMENT),
                N_OWN + 1
            )
        };
        let rows_width = rows_per_statement.max(1);
        let (rows, rows_joined, rollups) = match backend {
            Backend::Sqlite => (
                Padded::widths(rows_width, shared),
                Padded::widths(rows_width, joined),
                Padded::widths(SQLITE_GROUPS_PER_STATEMENT, |w| {
                    upsert(padded(ROLLUP_WIDTH, w))
                }),
            ),
            Backend::Postgres => (Vec::new(), Vec::new(), Vec::new()),
        };
        WriteSql {
            rows,
            rows_joined,
            rollups,
            copy: format!("COPY ledger ({COLUMNS}) FROM STDIN"),
            rollup: upsert(unnest(&rollup_cells(
                &(0, "", "", "", "", "", "", ""),
                &Aggregate::default(),
            ))),
        }
    }
}

/// One padded SQLite statement: `width` rows (or groups) per execution. Every
/// execution reads and filters all of its rows and clears all of its parameters, bound
/// or not, so a statement comes in a few widths (a sixteenth, a quarter and all of the
/// widest) and each execution takes the narrowest that holds its chunk: a batch of a
/// few rows does not pay for a wide statement's padding.
#[derive(Debug)]
struct Padded {
    width: usize,
    sql: String,
}

impl Padded {
    /// The statement `sql` writes for each width, narrowest first, up to `widest`.
    fn widths(widest: usize, sql: impl Fn(usize) -> String) -> Vec<Padded> {
        let mut widths = vec![(widest / 16).max(1), (widest / 4).max(1), widest.max(1)];
        widths.dedup();
        widths
            .into_iter()
            .map(|width| Padded {
                width,
                sql: sql(width),
            })
            .collect()
    }
}

/// Binds `cell` as the next parameter of `args`.
fn add<'q>(args: &mut sqlx::any::AnyArguments<'q>, cell: Cell<'q>) -> Result<(), LedgerError> {
    use sqlx::Arguments;
    match cell {
        Cell::Int(v) => args.add(v),
        Cell::Text(v) => args.add(v),
    }
    .map_err(|e| LedgerError::Invalid(e.to_string()))
}

/// Runs `items` through `statements` (narrowest first), one execution per chunk of the
/// widest's width, each by the narrowest statement that holds the chunk; a short chunk
/// leaves the rest of its statement's parameters unbound. The arguments are reserved up
/// front (no regrowth while binding).
async fn execute_chunks<'q, T: 'q, const W: usize>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    statements: &'q [Padded],
    items: &'q [T],
    cells: impl Fn(&'q T) -> [Cell<'q>; W],
) -> Result<(), LedgerError> {
    use sqlx::Arguments;
    let Some(widest) = statements.last() else {
        return Ok(());
    };
    for chunk in items.chunks(widest.width.max(1)) {
        let sql = statements
            .iter()
            .find(|s| s.width >= chunk.len())
            .unwrap_or(widest)
            .sql
            .as_str();
        let mut args = sqlx::any::AnyArguments::default();
        args.reserve(chunk.len() * W, 0);
        for cell in chunk.iter().flat_map(&cells) {
            add(&mut args, cell)?;
        }
        sqlx::query_with(sql, args).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts `rows` in chunks of up to the widest statement's rows and
/// `SQLITE_DIMS_PER_STATEMENT` dimension combinations, in the batch's order: a chunk of
/// one combination binds it once (`WriteSql::rows`), one of several binds each of them
/// once and every row its combination's place (`WriteSql::rows_joined`).
async fn insert_chunks(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &WriteSql,
    rows: &[LedgerRow],
) -> Result<(), LedgerError> {
    use sqlx::Arguments;
    let Some(widest) = sql.rows.last().map(|s| s.width) else {
        return Ok(());
    };
    let mut combinations: Vec<Dims<'_>> = Vec::with_capacity(SQLITE_DIMS_PER_STATEMENT);
    let mut places: Vec<i64> = Vec::with_capacity(widest);
    let mut rest = rows;
    while !rest.is_empty() {
        combinations.clear();
        places.clear();
        for r in rest.iter().take(widest) {
            let dims = row_dims(r);
            // Rows of one combination tend to come in runs: the last one first.
            let place = match places.last() {
                Some(&last) if same_dims(&combinations[last as usize], &dims) => last as usize,
                _ => match combinations.iter().position(|c| same_dims(c, &dims)) {
                    Some(place) => place,
                    None if combinations.len() < SQLITE_DIMS_PER_STATEMENT => {
                        combinations.push(dims);
                        combinations.len() - 1
                    }
                    None => break,
                },
            };
            places.push(place as i64);
        }
        let (chunk, after) = rest.split_at(places.len());
        rest = after;
        let one = combinations.len() == 1;
        let statements = if one { &sql.rows } else { &sql.rows_joined };
        let statement = statements
            .iter()
            .find(|s| s.width >= chunk.len())
            .unwrap_or(&statements[statements.len() - 1]);
        let mut args = sqlx::any::AnyArguments::default();
        args.reserve(
            combinations.len() * (N_DIMS + 1) + statement.width * (N_OWN + 1),
            0,
        );
        if one {
            for text in combinations[0] {
                add(&mut args, Cell::Text(text))?;
            }
        }
        for (r, place) in chunk.iter().zip(&places) {
            for cell in own_cells(r) {
                add(&mut args, cell)?;
            }
            if !one {
                add(&mut args, Cell::Int(Some(*place)))?;
            }
        }
        if !one {
            // The combinations follow the statement's every row, bound or not.
            for _ in 0..(statement.width - chunk.len()) * (N_OWN + 1) {
                add(&mut args, Cell::Int(None))?;
            }
            for (place, dims) in combinations.iter().enumerate() {
                add(&mut args, Cell::Int(Some(place as i64)))?;
                for text in dims {
                    add(&mut args, Cell::Text(*text))?;
                }
            }
        }
        sqlx::query_with(&statement.sql, args)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Inserts rows and adds them to the hourly rollup, inside the caller's transaction
/// (SQLite). The rollup is summed in memory first: one upsert row per hour and dimension
/// group.
pub(super) async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &WriteSql,
    rows: &[LedgerRow],
) -> Result<(), LedgerError> {
    let groups = rollup(rows);
    insert_chunks(tx, sql, rows).await?;
    execute_chunks(tx, &sql.rollups, &groups, |(k, a)| rollup_cells(k, a)).await?;
    Ok(())
}

/// `insert_rows` on PostgreSQL: the rows in one `COPY` (no statement to plan, no array
/// to parse, one message), then every rollup group of the batch in one upsert.
pub(super) async fn insert_pg(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sql: &WriteSql,
    rows: &[LedgerRow],
) -> Result<(), LedgerError> {
    let mut copy = tx.copy_in_raw(&sql.copy).await?;
    // Dropped unfinished (on an error), the copy is aborted and the transaction with it.
    copy.send(copy_text(rows.iter().map(row_cells))).await?;
    copy.finish().await?;
    let columns = pg_arrays(rollup(rows).iter().map(|(k, a)| rollup_cells(k, a)));
    let mut upsert = sqlx::query(&sql.rollup);
    for column in columns {
        upsert = upsert.bind(column);
    }
    upsert.execute(&mut **tx).await?;
    Ok(())
}

/// Rows in `COPY`'s text format: tab-separated, one line each, `\N` for NULL, and
/// backslash, tab, newline and carriage return escaped.
fn copy_text<'a, const W: usize>(rows: impl Iterator<Item = [Cell<'a>; W]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.size_hint().0 * 256);
    for cells in rows {
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match cell {
                Cell::Int(Some(v)) => {
                    use std::io::Write;
                    let _ = write!(out, "{v}");
                }
                Cell::Text(Some(v)) => {
                    for b in v.bytes() {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            _ => out.push(b),
                        }
                    }
                }
                Cell::Int(None) | Cell::Text(None) => out.extend_from_slice(b"\\N"),
            }
        }
        out.push(b'\n');
    }
    out
}

/// An hour and the dimensions of a rollup row (team `None` as `''`), borrowed from a batch.
type RollupKey<'a> = (
    i64,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

/// A row's rollup group: its hour and dimensions.
fn rollup_key(r: &LedgerRow) -> RollupKey<'_> {
    (
        r.ts_ms - r.ts_ms.rem_euclid(HOUR_MS),
        &r.key_id,
        &r.key_name,
        r.team.as_deref().unwrap_or_default(),
        &r.route,
        &r.provider,
        &r.model,
        &r.tier,
    )
}

/// Whether two rollup groups are the same (`same_text` on each dimension).
fn same_group(a: &RollupKey<'_>, b: &RollupKey<'_>) -> bool {
    a.0 == b.0
        && same_text(a.1, b.1)
        && same_text(a.2, b.2)
        && same_text(a.3, b.3)
        && same_text(a.4, b.4)
        && same_text(a.5, b.5)
        && same_text(a.6, b.6)
        && same_text(a.7, b.7)
}

/// A batch's rows summed per hour and dimensions, in key order (so concurrent writers
/// on PostgreSQL upsert shared groups in the same order and cannot deadlock). A row of
/// the same group as the row before it (the usual case: a batch's rows come in runs of
/// one key and model within an hour) is added to that group without a lookup.
fn rollup(rows: &[LedgerRow]) -> Vec<(RollupKey<'_>, Aggregate)> {
    let mut groups: Vec<(RollupKey<'_>, Aggregate)> = Vec::new();
    let mut places: std::collections::BTreeMap<RollupKey<'_>, usize> =
        std::collections::BTreeMap::new();
    let mut last = usize::MAX;
    for r in rows {
        let key = rollup_key(r);
        if groups.get(last).is_none_or(|(k, _)| !same_group(k, &key)) {
            last = *places.entry(key).or_insert_with(|| {
                groups.push((key, Aggregate::default()));
                groups.len() - 1
            });
        }
        let a = &mut groups[last].1;
        a.requests += 1;
        a.errors += i64::from(r.status >= 400);
        a.cost_nanos += r.cost_nanos.unwrap_or(0);
        a.baseline_cost_nanos += r.baseline_cost_nanos.or(r.cost_nanos).unwrap_or(0);
        a.unpriced += i64::from(r.cost_nanos.is_none() && r.status < 400);
        let t = [
            r.input_tokens,
            r.cached_input_tokens,
            r.cache_write_tokens,
            r.output_tokens,
            r.reasoning_tokens,
        ];
        for (sum, n) in a.tokens.iter_mut().zip(t) {
            *sum += n;
        }
        a.fallbacks += i64::from(r.fallbacks);
    }
    places
        .into_values()
        .map(|i| std::mem::take(&mut groups[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::ledger::SQLITE_ROWS_PER_STATEMENT;

    #[test]
    fn pg_array_literals_quote_text_and_spell_nulls() {
        let rows = [
            [Cell::Int(Some(-5)), Cell::Text(Some(r#"a"b\c,{d} NULL ü"#))],
            [Cell::Int(None), Cell::Text(None)],
            [Cell::Int(Some(7)), Cell::Text(Some(""))],
        ];
        assert_eq!(
            pg_arrays(rows.into_iter()),
            [r#"{-5,NULL,7}"#, r#"{"a\"b\\c,{d} NULL ü",NULL,""}"#]
        );
        assert_eq!(pg_arrays::<2>(std::iter::empty()), ["{}", "{}"]);
    }

    #[test]
    fn copy_text_escapes_and_spells_nulls() {
        let rows = [
            [
                Cell::Int(Some(-5)),
                Cell::Text(Some("a\tb\nc\rd\\e \"ü\" \\N")),
            ],
            [Cell::Int(None), Cell::Text(None)],
            [Cell::Int(Some(7)), Cell::Text(Some(""))],
        ];
        assert_eq!(
            String::from_utf8(copy_text(rows.into_iter())).unwrap(),
            "-5\ta\\tb\\nc\\rd\\\\e \"ü\" \\\\N\n\\N\t\\N\n7\t\n"
        );
    }

    #[test]
    fn write_statements_do_not_depend_on_the_batch() {
        let sql = WriteSql::new(Backend::Sqlite, 32);
        let widths = |p: &[Padded]| p.iter().map(|s| s.width).collect::<Vec<_>>();
        assert_eq!(widths(&sql.rows), [2, 8, 32]);
        assert_eq!(widths(&sql.rows_joined), [2, 8, 32]);
        assert_eq!(widths(&sql.rollups), [2, 8, SQLITE_GROUPS_PER_STATEMENT]);
        for s in &sql.rows {
            assert_eq!(s.sql.matches('?').count(), N_DIMS + s.width * N_OWN);
        }
        for s in &sql.rows_joined {
            assert_eq!(
                s.sql.matches('?').count(),
                SQLITE_DIMS_PER_STATEMENT * (N_DIMS + 1) + s.width * (N_OWN + 1)
            );
        }
        for s in &sql.rollups {
            assert_eq!(s.sql.matches('?').count(), s.width * ROLLUP_WIDTH);
        }
        for s in sql.rows.iter().chain(&sql.rows_joined).chain(&sql.rollups) {
            assert!(!s.sql.contains('$'), "anonymous parameters only");
            assert!(s.sql.contains("column1 IS NOT NULL"));
        }
        assert_eq!(widths(&WriteSql::new(Backend::Sqlite, 0).rows), [1]);
        let pg = WriteSql::new(Backend::Postgres, 32);
        assert_eq!(pg.copy, format!("COPY ledger ({COLUMNS}) FROM STDIN"));
        assert!(pg.rollup.contains(&format!("${ROLLUP_WIDTH}::bigint[]")));
        assert!(!pg.rollup.contains(&format!("${}", ROLLUP_WIDTH + 1)));
    }

    /// The joined INSERT reads its rows once, in order, as a co-routine, and finds each
    /// row's combination through an index SQLite builds on the materialized combinations,
    /// not by scanning them per row; the one-combination INSERT has no join.
    #[tokio::test]
    async fn the_joined_insert_looks_each_combination_up_by_its_place() {
        let path = std::env::temp_dir().join(format!("bazaar-join-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = super::super::Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let pool = ledger.pool();
        let plan = |sql: String| async move {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            plan.into_iter().map(|p| p.3).collect::<Vec<_>>().join("; ")
        };
        for width in [8, 32, SQLITE_ROWS_PER_STATEMENT] {
            let sql = WriteSql::new(Backend::Sqlite, width);
            let joined = plan(sql.rows_joined.last().unwrap().sql.clone()).await;
            eprintln!("{width}: {joined}");
            // The rows are the outer loop, the combinations the inner one.
            assert!(
                joined.starts_with(&format!("SCAN {width}-ROW VALUES CLAUSE;")),
                "{width}: {joined}"
            );
            assert!(
                joined.ends_with(&format!(
                    "SEARCH {SQLITE_DIMS_PER_STATEMENT}-ROW VALUES CLAUSE USING AUTOMATIC COVERING INDEX (column1=?)"
                )),
                "{width}: {joined}"
            );
            let shared = plan(sql.rows.last().unwrap().sql.clone()).await;
            assert!(!shared.contains("SEARCH"), "{shared}");
        }
        ledger.close().await;
        // The file and what WAL mode keeps beside it.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn dimensions_are_the_texts_a_batch_repeats() {
        let names: Vec<&str> = COLUMNS.split(", ").collect();
        let dims: Vec<&str> = names
            .iter()
            .zip(DIMENSION)
            .filter(|(_, d)| *d)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(
            dims,
            [
                "key_name",
                "team",
                "route",
                "provider",
                "model",
                "tier",
                "endpoint",
                "catalog_version",
                "key_id"
            ]
        );
        assert_eq!(names.len(), N_COLUMNS);
        let row = LedgerRow {
            request_id: "r".into(),
            key_name: "k".into(),
            route: "k".into(),
            error_type: Some("e".into()),
            ts_ms: 7,
            status: 200,
            ..Default::default()
        };
        let cells = row_cells(&row);
        let column = |name: &str| cells[names.iter().position(|n| *n == name).unwrap()];
        assert_eq!(column("ts_ms"), Cell::Int(Some(7)));
        assert_eq!(column("request_id"), Cell::Text(Some("r")));
        assert_eq!(column("key_name"), Cell::Text(Some("k")));
        assert_eq!(column("team"), Cell::Text(None));
        assert_eq!(column("status"), Cell::Int(Some(200)));
        assert_eq!(column("error_type"), Cell::Text(Some("e")));
        assert_eq!(column("key_id"), Cell::Text(Some("")));
        let other = LedgerRow {
            key_name: "k".to_string().into(),
            ..row.clone()
        };
        assert!(same_dims(&row_dims(&row), &row_dims(&other)));
        let no_team = LedgerRow {
            team: Some("".into()),
            ..row.clone()
        };
        assert!(!same_dims(&row_dims(&row), &row_dims(&no_team)));
    }
}
