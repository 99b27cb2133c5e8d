//! Outcome rows for training and evaluation: a CSV with the header `prompt,model,score`
//! (score 0–1) and optional `cost` (USD of that call), `task` and `weight` (how much the
//! prompt counts in a fit, default 1) columns, several rows per prompt; grouped into one
//! `Outcome` per distinct prompt, in first-seen order.

use std::collections::HashMap;

/// Why outcome rows were refused; a problem in a record names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowsError {
    #[error("unterminated quoted field at line {0}")]
    Unterminated(usize),
    #[error("empty file; expected the header `prompt,model,score`")]
    Empty,
    #[error("header `{0}` lacks one of prompt, model, score")]
    Header(String),
    #[error("record {row}: {problem}")]
    Record { row: usize, problem: String },
    #[error("no rows after the header")]
    NoRows,
}

/// One prompt with what each model scored on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub prompt: String,
    /// Per model (index into `Outcomes::models`): mean score 0–1, `None` when absent.
    pub scores: Vec<Option<f64>>,
    /// Per model: the call's cost in USD when the rows give it.
    pub costs: Vec<Option<f64>>,
    /// A task label when the rows give one.
    pub task: Option<String>,
    /// How much the prompt counts in a fit (the last `weight` its rows give; 1 without).
    /// Evaluation counts every prompt once whatever its weight.
    pub weight: f64,
}

/// Outcomes grouped by prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    /// Model ids, sorted.
    pub models: Vec<String>,
    pub prompts: Vec<Outcome>,
}

/// Splits CSV text into records (RFC 4180: quoted fields may hold commas, quotes as
/// `""` and newlines).
pub fn records(text: &str) -> Result<Vec<Vec<String>>, RowsError> {
    let mut out = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut record));
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(RowsError::Unterminated(line));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        out.push(record);
    }
    Ok(out)
}

/// Parses rows text into outcomes; every problem names its line.
pub fn parse(text: &str) -> Result<Outcomes, RowsError> {
    let recs = records(text)?;
    let Some((header, body)) = recs.split_first() else {
        return Err(RowsError::Empty);
    };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(pc), Some(mc), Some(sc)) = (col("prompt"), col("model"), col("score")) else {
        return Err(RowsError::Header(header.join(",")));
    };
    let cc = col("cost");
    let tc = col("task");
    let wc = col("weight");
    let mut models: Vec<String> = body
        .iter()
        .filter_map(|r| r.get(mc).map(|m| m.trim().to_string()))
        .filter(|m| !m.is_empty())
        .collect();
    models.sort();
    models.dedup();
    let index: HashMap<&str, usize> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut by_prompt: HashMap<String, usize> = HashMap::new();
    let mut prompts: Vec<Outcome> = Vec::new();
    let mut sums: Vec<Vec<(f64, u32)>> = Vec::new();
    for (i, r) in body.iter().enumerate() {
        let row = i + 2;
        let bad = |problem: String| RowsError::Record { row, problem };
        if r.len() == 1 && r[0].is_empty() {
            continue;
        }
        let get = |c: usize| r.get(c).map(String::as_str).unwrap_or("");
        let m = get(mc).trim();
        let Some(&mi) = index.get(m) else {
            return Err(bad("empty model".into()));
        };
        let score: f64 = get(sc)
            .trim()
            .parse()
            .map_err(|_| bad(format!("score `{}` is not a number", get(sc))))?;
        if !(0.0..=1.0).contains(&score) {
            return Err(bad(format!("score {score} is outside 0–1")));
        }
        // An optional column holding a non-negative number.
        let amount = |col: Option<usize>, name: &str| -> Result<Option<f64>, RowsError> {
            match col.map(get).map(str::trim).filter(|v| !v.is_empty()) {
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(Some)
                    .ok_or_else(|| bad(format!("{name} `{v}` is not a non-negative number"))),
                None => Ok(None),
            }
        };
        let cost = amount(cc, "cost")?;
        let weight = amount(wc, "weight")?;
        let prompt = get(pc).to_string();
        let pi = *by_prompt.entry(prompt.clone()).or_insert_with(|| {
            prompts.push(Outcome {
                prompt,
                scores: vec![None; models.len()],
                costs: vec![None; models.len()],
                task: None,
                weight: 1.0,
            });
            sums.push(vec![(0.0, 0); models.len()]);
            prompts.len() - 1
        });
        sums[pi][mi].0 += score;
        sums[pi][mi].1 += 1;
        if cost.is_some() {
            prompts[pi].costs[mi] = cost;
        }
        if let Some(w) = weight {
            prompts[pi].weight = w;
        }
        if let Some(t) = tc.map(get).filter(|t| !t.is_empty()) {
            prompts[pi].task = Some(t.to_string());
        }
    }
    for (p, s) in prompts.iter_mut().zip(sums) {
        p.scores = s
            .iter()
            .map(|(sum, n)| (*n > 0).then(|| sum / f64::from(*n)))
            .collect();
    }
    if prompts.is_empty() {
        return Err(RowsError::NoRows);
    }
    Ok(Outcomes { models, prompts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_multiline_prompts_and_groups_them() {
        let text = "prompt,model,score,cost\n\"What is 2+2?\nA. 3\nB. 4\",a,1,0.5\n\"What is 2+2?\nA. 3\nB. 4\",b,0,\n\"say \"\"hi\"\"\",a,0.5,\n";
        let o = parse(text).unwrap();
        assert_eq!(o.models, ["a", "b"]);
        assert_eq!(o.prompts.len(), 2);
        assert_eq!(o.prompts[0].scores, [Some(1.0), Some(0.0)]);
        assert_eq!(o.prompts[0].costs, [Some(0.5), None]);
        assert_eq!(o.prompts[1].prompt, "say \"hi\"");
        assert_eq!(o.prompts[1].scores, [Some(0.5), None]);
        assert_eq!(o.prompts[0].weight, 1.0);
    }

    #[test]
    fn a_weight_column_weighs_its_prompt() {
        let o = parse(
            "prompt,model,score,weight
x,a,1,2.5
x,b,0,2.5
y,a,1,
",
        )
        .unwrap();
        assert_eq!(o.prompts[0].weight, 2.5);
        assert_eq!(o.prompts[1].weight, 1.0);
        assert!(parse(
            "prompt,model,score,weight
x,a,1,-1
"
        )
        .unwrap_err()
        .to_string()
        .contains("weight"));
    }

    #[test]
    fn refuses_bad_rows_with_the_record() {
        assert!(parse("prompt,model,score\nx,a,2\n")
            .unwrap_err()
            .to_string()
            .contains("outside 0–1"));
        assert!(parse("prompt,model\nx,a\n")
            .unwrap_err()
            .to_string()
            .contains("header"));
        assert!(parse("prompt,model,score\n\"x,a,1\n")
            .unwrap_err()
            .to_string()
            .contains("unterminated"));
    }
}
