//! Pure logic: no I/O, no clock except where a caller passes one in, unit-tested inline.
//! Depends on nothing else in the crate; everything else may depend on it.

pub mod activity;
pub mod answer;
pub mod audit_leaf;
pub mod card;
pub mod event;
pub mod hr_command;
pub mod markup;
pub mod merkle;
pub mod note;
pub mod reply;
pub mod secret;
pub mod signature;
pub mod trace;
