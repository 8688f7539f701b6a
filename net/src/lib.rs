//! # tieline-net
//!
//! Everything around the pure core that touches the outside world: key files, chain files, the
//! QUIC transport ([`transport`]), durable storage ([`storage`]), the management node runtime
//! ([`node`]), the participant client ([`participant`]), a local cluster of node processes
//! ([`cluster`], for the demo, the end-to-end tests and the benchmark), any MATPOWER case as a
//! consortium negotiated in memory ([`gridcase`]), the HTML audit report ([`report`]) and the
//! `tieline` command.

pub mod chainfile;
pub mod cluster;
pub mod entsoe;
pub mod gridcase;
pub mod keyfile;
pub mod node;
pub mod participant;
pub mod report;
pub mod storage;
pub mod transport;
