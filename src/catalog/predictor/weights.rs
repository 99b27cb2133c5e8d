//! The predictor's weights and their file format: versioned, little-endian, with the
//! feature layout hash so a file fitted for another layout is refused at load, never
//! silently misread.
//!
//! Layout (version 5): `BZRQ`, u32 format version, u64 layout hash, u32 buckets, u32
//! dense, u32 flags (bit 0: free-form prompts' grams split into their own buckets), u32
//! rank, u32 models, u32 note length + UTF-8 note, u32 minimum support, u32 × `SHAPES`
//! training prompts of each shape, f32 shared bias, f32 × (buckets + dense) shared
//! weights, f32 × rank × (buckets + dense) projection, then per model: u16 id length +
//! UTF-8 id, f32 prior (base rate 0–1 it was fitted at), f32 bias, f32 × (buckets +
//! dense) weights, f32 × rank factors. Versions 2 and 3 were fitted on features hashed
//! with FNV-1a (every gram's bucket differs), version 4 read every prompt's grams
//! whatever its shape; both are refused with the advice to retrain.

use std::fmt;

use super::features::{self, Features, DENSE};

const MAGIC: &[u8; 4] = b"BZRQ";
/// The file format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 5;
const MAX_MODELS: u32 = 4096;
/// The largest rank of the prompt projection.
pub const MAX_RANK: u32 = 64;
const MAX_BUCKETS: u32 = 1 << 22;

/// Prompt shapes: a prompt's shape is three bits of its dense features (multiple-choice
/// layout, at least two numbers, a question mark), the kinds of prompt benchmarks and
/// traffic come in (a quiz question, a word problem, a request to write something).
pub const SHAPES: usize = 8;

// The dense index of the shared copy of `SHAPE_NAMES[i]` is i (the flag at 0); the
// test `shape_bits_are_the_named_features` checks the names.
const MULTIPLE_CHOICE: usize = 0;
const HAS_NUMBERS: usize = 11;
const QUESTION: usize = 7;

/// The shape (0..`SHAPES`) of a prompt with features `f`.
pub fn shape_of(f: &Features) -> usize {
    let bit = |i: usize| f.dense[i] != 0.0;
    shape(bit(MULTIPLE_CHOICE), bit(HAS_NUMBERS), bit(QUESTION))
}

/// The shape (0..`SHAPES`) of a prompt laid out as multiple choice or not, with at
/// least two numbers or not, and with a question mark or not.
pub fn shape(multiple_choice: bool, numbers: bool, question: bool) -> usize {
    usize::from(multiple_choice) | usize::from(numbers) << 1 | usize::from(question) << 2
}

/// A shape's name, for explanations and reports.
pub fn shape_name(shape: usize) -> String {
    let mut parts = vec![if shape & 1 == 1 {
        "multiple-choice"
    } else {
        "free-form"
    }];
    parts.push(if shape & 2 == 2 {
        "numbers"
    } else {
        "no numbers"
    });
    parts.push(if shape & 4 == 4 {
        "question"
    } else {
        "no question"
    });
    parts.join(", ")
}

/// Why a weights file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsError(pub String);

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WeightsError {}

/// One model's own terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTerms {
    pub id: String,
    /// The base rate (0–1) the model scored at in the training rows.
    pub prior: f32,
    pub bias: f32,
    /// `buckets + DENSE` weights.
    pub weights: Vec<f32>,
    /// `rank` factors: the model's vector in the learned prompt projection's space.
    pub factors: Vec<f32>,
}

/// Fitted predictor weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub buckets: u32,
    /// Free-form prompts' grams also counted in their own buckets (`features::extract`).
    pub split: bool,
    /// What they were fitted on and with which settings.
    pub note: String,
    /// The training prompts a shape needs for its word grams to count (`gate`).
    pub min_support: u32,
    /// Training prompts of each shape (`shape_of`).
    pub support: [u32; SHAPES],
    pub shared_bias: f32,
    /// `buckets + DENSE` shared (difficulty) weights.
    pub shared: Vec<f32>,
    /// Dimensions of the learned prompt projection (0: none).
    pub rank: u32,
    /// The projection, `rank` rows of `buckets + DENSE` weights, row after row: a prompt's
    /// coordinates times each model's `factors` is the bilinear part of its logit.
    pub projection: Vec<f32>,
    pub models: Vec<ModelTerms>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WeightsError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(WeightsError(format!(
                "truncated at byte {} while reading {what}",
                self.at
            ))),
        }
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WeightsError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    fn u16(&mut self, what: &str) -> Result<u16, WeightsError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, WeightsError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> Result<f32, WeightsError> {
        let v = f32::from_le_bytes(self.array(what)?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(WeightsError(format!("{what} is not a finite number")))
        }
    }
    fn floats(&mut self, n: usize, what: &str) -> Result<Vec<f32>, WeightsError> {
        (0..n).map(|_| self.f32(what)).collect()
    }
    fn text(&mut self, n: usize, what: &str) -> Result<String, WeightsError> {
        String::from_utf8(self.take(n, what)?.to_vec())
            .map_err(|_| WeightsError(format!("{what} is not UTF-8")))
    }
}

impl Weights {
    /// Reads a weights file, refusing (with the reason) one that does not parse or was
    /// fitted for another feature layout.
    pub fn parse(bytes: &[u8]) -> Result<Weights, WeightsError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4, "the magic number")? != MAGIC {
            return Err(WeightsError(
                "not a bazaar predictor weights file (bad magic number)".into(),
            ));
        }
        let version = r.u32("the format version")?;
        if version == 2 || version == 3 {
            return Err(WeightsError(format!(
                "format version {version}: fitted on the FNV-hashed features of earlier builds; this build reads version {FORMAT_VERSION}; retrain with `bazaar router train`"
            )));
        }
        if version == 4 {
            return Err(WeightsError(format!(
                "format version 4: fitted without a record of the prompt shapes it saw, so it cannot tell which prompts its word grams know; this build reads version {FORMAT_VERSION}; retrain with `bazaar router train`"
            )));
        }
        if version != FORMAT_VERSION {
            return Err(WeightsError(format!(
                "format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        let layout = r.u64("the layout hash")?;
        let buckets = r.u32("the bucket count")?;
        if !buckets.is_power_of_two() || buckets > MAX_BUCKETS {
            return Err(WeightsError(format!(
                "bucket count {buckets} is not a power of two up to {MAX_BUCKETS}"
            )));
        }
        let dense = r.u32("the dense feature count")?;
        let flags = r.u32("the feature flags")?;
        if flags > 1 {
            return Err(WeightsError(format!("unknown feature flags {flags:#x}")));
        }
        let split = flags & 1 == 1;
        if dense as usize != DENSE || layout != features::layout_hash(buckets, split) {
            return Err(WeightsError(format!(
                "fitted for another feature layout (hash {layout:016x}, {dense} dense features); this build uses {:016x} with {DENSE}; retrain with `bazaar router train`",
                features::layout_hash(buckets, split)
            )));
        }
        let rank = r.u32("the rank")?;
        if rank > MAX_RANK {
            return Err(WeightsError(format!("rank {rank} is more than {MAX_RANK}")));
        }
        let n_models = r.u32("the model count")?;
        if n_models > MAX_MODELS {
            return Err(WeightsError(format!(
                "{n_models} models is more than {MAX_MODELS}"
            )));
        }
        let note_len = r.u32("the note length")? as usize;
        let note = r.text(note_len, "the note")?;
        let min_support = r.u32("the minimum support")?;
        let mut support = [0u32; SHAPES];
        for s in &mut support {
            *s = r.u32("the prompts per shape")?;
        }
        let width = (buckets + dense) as usize;
        let shared_bias = r.f32("the shared bias")?;
        let shared = r.floats(width, "the shared weights")?;
        let projection = r.floats(rank as usize * width, "the projection")?;
        let mut models: Vec<ModelTerms> = Vec::new();
        for i in 0..n_models {
            let len = r.u16("a model id length")? as usize;
            let id = r.text(len, "a model id")?;
            if id.is_empty() || models.iter().any(|m| m.id == id) {
                return Err(WeightsError(format!(
                    "model {i}: empty or repeated id `{id}`"
                )));
            }
            let prior = r.f32("a model prior")?;
            if !(0.0..=1.0).contains(&prior) {
                return Err(WeightsError(format!(
                    "model `{id}`: prior {prior} is outside 0–1"
                )));
            }
            let bias = r.f32("a model bias")?;
            let weights = r.floats(width, "a model's weights")?;
            let factors = r.floats(rank as usize, "a model's factors")?;
            models.push(ModelTerms {
                id,
                prior,
                bias,
                weights,
                factors,
            });
        }
        if r.at != bytes.len() {
            return Err(WeightsError(format!(
                "{} bytes after the last model",
                bytes.len() - r.at
            )));
        }
        Ok(Weights {
            buckets,
            split,
            note,
            min_support,
            support,
            shared_bias,
            shared,
            rank,
            projection,
            models,
        })
    }

    /// The file's bytes; `parse(to_bytes(w)) == w`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let width = self.buckets as usize + DENSE;
        let mut out =
            Vec::with_capacity(64 + 4 * width * (1 + self.rank as usize + self.models.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&features::layout_hash(self.buckets, self.split).to_le_bytes());
        out.extend_from_slice(&self.buckets.to_le_bytes());
        out.extend_from_slice(&(DENSE as u32).to_le_bytes());
        out.extend_from_slice(&u32::from(self.split).to_le_bytes());
        out.extend_from_slice(&self.rank.to_le_bytes());
        out.extend_from_slice(&(self.models.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.note.len() as u32).to_le_bytes());
        out.extend_from_slice(self.note.as_bytes());
        out.extend_from_slice(&self.min_support.to_le_bytes());
        for s in self.support {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&self.shared_bias.to_le_bytes());
        let rank = self.rank as usize;
        let floats = |out: &mut Vec<u8>, w: &[f32], n: usize| {
            for i in 0..n {
                out.extend_from_slice(&w.get(i).copied().unwrap_or(0.0).to_le_bytes());
            }
        };
        floats(&mut out, &self.shared, width);
        floats(&mut out, &self.projection, rank * width);
        for m in &self.models {
            let id = &m.id.as_bytes()[..m.id.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(id.len() as u16).to_le_bytes());
            out.extend_from_slice(id);
            out.extend_from_slice(&m.prior.to_le_bytes());
            out.extend_from_slice(&m.bias.to_le_bytes());
            floats(&mut out, &m.weights, width);
            floats(&mut out, &m.factors, rank);
        }
        out
    }
}

impl Weights {
    /// Whether the word grams of a prompt of `shape` count: the training rows held at
    /// least `min_support` prompts of that shape. Grams learned on quiz questions and
    /// word problems say nothing reliable about a request unlike both.
    pub fn knows_shape(&self, shape: usize) -> bool {
        self.support.get(shape).copied().unwrap_or(0) >= self.min_support
    }

    /// Whether the word grams of a prompt with this layout and question mark may count,
    /// however many numbers it holds: false means `knows_shape` is false for it.
    pub fn may_know(&self, multiple_choice: bool, question: bool) -> bool {
        [false, true]
            .into_iter()
            .any(|numbers| self.knows_shape(shape(multiple_choice, numbers, question)))
    }

    /// Drops the word grams of a prompt whose shape the weights do not know: it is
    /// then scored by the models' priors and its shape features alone. Returns whether
    /// the grams were kept.
    pub fn gate(&self, f: &mut Features) -> bool {
        let known = self.knows_shape(shape_of(f));
        if !known {
            f.hashed.clear();
        }
        known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(rank: u32) -> Weights {
        let width = 16 + DENSE;
        Weights {
            buckets: 16,
            split: true,
            note: "test".into(),
            min_support: 3,
            support: [0, 5, 2, 9, 0, 0, 3, 1],
            shared_bias: -0.25,
            shared: (0..width).map(|i| i as f32 / 10.0).collect(),
            rank,
            projection: (0..rank as usize * width)
                .map(|i| i as f32 / 100.0)
                .collect(),
            models: vec![ModelTerms {
                id: "m".into(),
                prior: 0.7,
                bias: 0.1,
                weights: vec![0.5; width],
                factors: vec![-0.5; rank as usize],
            }],
        }
    }

    #[test]
    fn shape_bits_are_the_named_features() {
        assert_eq!(features::dense_name(MULTIPLE_CHOICE), "multiple-choice");
        assert_eq!(features::dense_name(HAS_NUMBERS), "has-numbers");
        assert_eq!(features::dense_name(QUESTION), "question");
    }

    #[test]
    fn the_grams_of_a_shape_the_rows_lacked_are_dropped() {
        // tiny's rows: 5 prompts of shape 1 (multiple-choice), none of shape 0.
        let w = tiny(0);
        let mut quiz = features::extract("Pick one\nA. one\nB. two", 16, true);
        assert_eq!(shape_of(&quiz), 1);
        assert!(w.gate(&mut quiz) && !quiz.hashed.is_empty());
        let mut note = features::extract("Write a poem about the sea.", 16, true);
        let dense = note.dense;
        assert_eq!(shape_of(&note), 0);
        assert!(!w.gate(&mut note) && note.hashed.is_empty());
        assert_eq!(note.dense, dense);
        let problem = features::extract("Tom has 3 apples and buys 4. How many now?", 16, true);
        assert_eq!(shape_of(&problem), 6);
        assert_eq!(shape_name(6), "free-form, numbers, question");
    }

    #[test]
    fn round_trips() {
        for rank in [0, 3] {
            let w = tiny(rank);
            assert_eq!(Weights::parse(&w.to_bytes()).unwrap(), w);
        }
    }

    #[test]
    fn refuses_files_of_earlier_formats_with_advice_to_retrain() {
        for old in [2u32, 3, 4] {
            let mut v = tiny(0).to_bytes();
            v[4..8].copy_from_slice(&old.to_le_bytes());
            let err = Weights::parse(&v).unwrap_err().0;
            assert!(
                err.contains(&format!("format version {old}")) && err.contains("retrain"),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_bad_files_with_the_reason() {
        let good = tiny(2).to_bytes();
        let err = |b: &[u8]| Weights::parse(b).unwrap_err().0;
        assert!(err(b"hello").contains("magic"));
        assert!(err(&good[..good.len() - 3]).contains("truncated"));
        let mut v = good.clone();
        v[4] = 9;
        assert!(err(&v).contains("format version 9"));
        let mut l = good.clone();
        l[8] ^= 1;
        assert!(err(&l).contains("feature layout"));
        let mut extra = good.clone();
        extra.push(0);
        assert!(err(&extra).contains("after the last model"));
        let mut rank = good.clone();
        rank[28..32].copy_from_slice(&(MAX_RANK + 1).to_le_bytes());
        assert!(err(&rank).contains("rank"));
    }
}
