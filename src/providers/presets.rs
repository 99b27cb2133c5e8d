//! Re-exports of `config::presets`, where the preset rows (config data) now live; kept so
//! `providers::presets::…` paths keep compiling. New code names `config::presets`.

pub use crate::config::presets::*;
