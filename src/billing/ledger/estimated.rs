//! Which token buckets of a ledger row the gateway estimated, and how that is stored in
//! the row's `estimated` column (an integer, so no migration): 0 when the backend
//! reported every bucket; otherwise bit 0 set and bits 1–5 the estimated buckets.
//! Rows written before buckets were recorded hold 1: then every bucket was estimated.

use serde::{Deserialize, Serialize};

use crate::api::usage::Buckets;

/// The estimated buckets of one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimated(Buckets);

impl Estimated {
    /// Nothing estimated: the backend reported every bucket.
    pub const NONE: Estimated = Estimated(Buckets::NONE);

    pub fn new(buckets: Buckets) -> Estimated {
        Estimated(buckets)
    }

    /// True when any bucket was estimated.
    pub fn any(self) -> bool {
        !self.0.is_empty()
    }

    pub fn buckets(self) -> Buckets {
        self.0
    }

    /// The value of the `estimated` column.
    pub fn column(self) -> i64 {
        match self.0.bits() {
            0 => 0,
            bits => 1 | (i64::from(bits) << 1),
        }
    }

    /// Reads the `estimated` column (a bare 1, from rows written before buckets were
    /// recorded, means every bucket).
    pub fn from_column(value: i64) -> Estimated {
        if value == 0 {
            return Estimated::NONE;
        }
        match Buckets::from_bits(((value >> 1) & 0x1f) as u8) {
            Buckets::NONE => Estimated(Buckets::ALL),
            buckets => Estimated(buckets),
        }
    }
}

impl From<Estimated> for i64 {
    fn from(e: Estimated) -> i64 {
        e.column()
    }
}

impl Serialize for Estimated {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.column())
    }
}

impl<'de> Deserialize<'de> for Estimated {
    /// The column value, or a bool (spill files written before buckets were recorded).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Estimated, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Flag(bool),
            Column(i64),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Flag(flag) => Estimated::from_column(i64::from(flag)),
            Stored::Column(value) => Estimated::from_column(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_round_trips_and_reads_old_rows() {
        for bits in 0..=31u8 {
            let e = Estimated::new(Buckets::from_bits(bits));
            assert_eq!(Estimated::from_column(e.column()), e);
            assert_eq!(e.any(), bits != 0);
        }
        assert_eq!(Estimated::from_column(1).buckets(), Buckets::ALL);
        let output = Estimated::new(Buckets::OUTPUT | Buckets::REASONING);
        assert_eq!(output.column(), 1 | (0b11000 << 1));
        let json = serde_json::to_string(&output).unwrap();
        assert_eq!(serde_json::from_str::<Estimated>(&json).unwrap(), output);
        assert_eq!(
            serde_json::from_str::<Estimated>("true").unwrap().buckets(),
            Buckets::ALL
        );
        assert_eq!(
            serde_json::from_str::<Estimated>("false").unwrap(),
            Estimated::NONE
        );
    }
}
