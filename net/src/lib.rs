//! # tieline-net
//!
//! Everything around the pure core that touches the outside world: key files, chain files, the
//! QUIC transport ([`transport`]), durable storage ([`storage`]) and the `tieline` command.

pub mod chainfile;
pub mod keyfile;
pub mod storage;
pub mod transport;
