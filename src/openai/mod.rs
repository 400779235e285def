//! OpenAI wire types, split by API. Field names are exactly OpenAI's.

pub mod chat;
pub mod common;
pub mod completions;
pub mod models;
pub mod structured;
pub mod tools;
