//! # tieline-net
//!
//! Everything around the pure core that touches the outside world: key files, chain files and
//! the `tieline` command. (The QUIC node runtime joins it in its own issue.)

pub mod chainfile;
pub mod keyfile;
