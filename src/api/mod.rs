//! Wire types of the front end (OpenAI, and Anthropic Messages translated to it) and
//! `ApiError`, the one error type a client ever sees. No I/O here.

pub mod anthropic;
pub mod chat_out;
pub mod chat_view;
pub mod error;
pub mod openai;
pub mod responses;
pub mod rewrite;
pub mod sse;
pub mod usage;
pub mod valid;

pub use error::{ApiError, ErrorLabel, ReplyError};
pub use usage::Usage;
