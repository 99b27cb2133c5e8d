//! Training rows from the gateway's own traffic, for `bazaar router train --from-ledger`:
//! the prompts kept in the ledger (`[router.learn] keep_prompts = true`) joined with the
//! scores posted to `/v1/feedback` and the model that answered, as `prompt,model,score`
//! outcomes, the same shape `--data` reads. Reads the ledger; writes nothing.

use std::path::Path;

use super::rows::{self, Outcomes, RowsError};
use crate::billing::ledger::learn::{training_rows, TrainingRow};
use crate::billing::ledger::Ledger;
use crate::config::{process_env, redact_url, Config};

/// Why the ledger gave nothing to train on.
#[derive(Debug, thiserror::Error)]
pub enum LedgerRowsError {
    #[error("the ledger holds no call with both a kept prompt and a feedback score; set `[router.learn] keep_prompts = true` and post scores to /v1/feedback")]
    Empty,
    #[error("{0}")]
    Rows(#[from] RowsError),
    /// The config naming the ledger did not load.
    #[error("{0}")]
    Config(String),
    /// The ledger could not be opened or read.
    #[error("{0}")]
    Read(String),
}

/// One CSV field, quoted as RFC 4180 wants.
fn field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The rows as `prompt,model,score` CSV text (what `--data` reads).
pub fn to_csv(rows: &[TrainingRow]) -> String {
    let mut csv = String::from("prompt,model,score\n");
    for r in rows {
        csv.push_str(&format!(
            "{},{},{}\n",
            field(&r.prompt),
            field(&r.model),
            r.score
        ));
    }
    csv
}

/// The rows grouped into outcomes; an error says why there is nothing to train on.
pub fn outcomes(rows: &[TrainingRow]) -> Result<Outcomes, LedgerRowsError> {
    if rows.is_empty() {
        return Err(LedgerRowsError::Empty);
    }
    Ok(rows::parse(&to_csv(rows))?)
}

/// Reads the training rows from the ledger the config at `config` names (the embedded
/// default config when `None`).
pub fn read(config: Option<&Path>) -> Result<Vec<TrainingRow>, LedgerRowsError> {
    let config = match config {
        Some(p) => Config::load(p, &process_env)
            .map_err(|e| LedgerRowsError::Config(format!("{}: {e}", p.display())))?,
        None => Config::resolve(&Config::embedded_default(&process_env), &process_env)
            .map_err(|e| LedgerRowsError::Config(e.to_string()))?,
    };
    let url = config.ledger.url;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LedgerRowsError::Read(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let opened = |e| LedgerRowsError::Read(format!("the ledger at {}: {e}", redact_url(&url)));
        let ledger = Ledger::connect(&url).await.map_err(opened)?;
        let rows = training_rows(&ledger).await.map_err(opened);
        ledger.close().await;
        rows
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_csv_with_quotes_commas_and_newlines() {
        let rows = vec![
            TrainingRow {
                prompt: "say \"hi\", then\nstop".into(),
                model: "m1".into(),
                score: 0.25,
            },
            TrainingRow {
                prompt: "say \"hi\", then\nstop".into(),
                model: "m2".into(),
                score: 1.0,
            },
        ];
        let o = outcomes(&rows).unwrap();
        assert_eq!(o.models, ["m1", "m2"]);
        assert_eq!(o.prompts.len(), 1);
        assert_eq!(o.prompts[0].prompt, "say \"hi\", then\nstop");
        assert_eq!(o.prompts[0].scores, [Some(0.25), Some(1.0)]);
        assert!(outcomes(&[])
            .unwrap_err()
            .to_string()
            .contains("keep_prompts"));
    }
}
