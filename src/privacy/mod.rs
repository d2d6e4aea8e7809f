//! Personal data: who may record a change ([`editors`]), legal holds ([`holds`]), how long
//! data is kept ([`retention`]) and erasing a person or a record ([`erase`], and in the
//! stream [`stream`]). Every change an operator makes is itself an audit entry
//! ([`operator`]), sealed like the rest. The README's "Personal data" section is the guide.

pub mod editors;
pub mod erase;
pub mod holds;
pub mod operator;
pub mod retention;
pub mod stream;
