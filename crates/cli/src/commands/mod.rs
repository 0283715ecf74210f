//! The commands users run: each file is one command's arguments and body (`query.rs`
//! holds `query`, `alerts` and `dead-letters`, the three readers of a deployment's
//! tables and streams). A command may use another (`demo --serve` serves the
//! dashboard) and the shared machinery at the crate root; nothing outside `commands`
//! uses a command.

pub mod dashboard;
pub mod demo;
pub mod produce;
pub mod query;
pub mod replay;
pub mod rules;
pub mod run;
pub mod setup;
pub mod sql;
