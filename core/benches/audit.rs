//! Audit throughput beside raw ed25519 verification and SHA-256, measured in one run.
//!
//! `cargo bench -p tieline-core --bench audit` (release). Size with `BLOCKS` and `TRADES`
//! (defaults 1000 x 1000).

use std::time::Instant;

use tieline_core::audit::ChainAuditor;
use tieline_core::crypto::{Ed25519, SignatureScheme, Signer, sha256};
use tieline_core::encoding::Tagged;
use tieline_core::sample::SampleConsortium;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let blocks = env("BLOCKS", 1000);
    let trades = env("TRADES", 1000);
    let t = Instant::now();
    let s = SampleConsortium::new(4, 250);
    let chain = s.chain(blocks, trades);
    let encoded: Vec<Vec<u8>> = chain.iter().map(Tagged::to_canonical_bytes).collect();
    drop(chain);
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    println!(
        "built {blocks} blocks x {trades} trades ({:.1} MB encoded) in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let scheme = Ed25519::with_known_keys(s.genesis.public_keys());
    let t = Instant::now();
    let clearing = tieline_core::clearing::rule_for(s.genesis.clearing.rule);
    let mut auditor = ChainAuditor::new(&s.genesis, &scheme, clearing);
    for b in &encoded {
        auditor
            .push_encoded(b)
            .expect("the sample chain audits clean");
    }
    let secs = t.elapsed().as_secs_f64();
    let summary = auditor.finish();
    let sigs_per_block = summary.signatures as f64 / blocks as f64;
    let audit_blocks = blocks as f64 / secs;
    println!(
        "audit (decode + every check):    {audit_blocks:>10.1} blocks/s  {:>12.0} trades/s  ({:.2} s, {} signatures)",
        summary.trades as f64 / secs,
        secs,
        summary.signatures
    );

    // The same verifier on bid-sized messages, one signature after another on one core.
    let signer = &s.participants[0];
    let bid = s.bid(0, 1, 1);
    let msg = bid.body.to_canonical_bytes();
    let sig = signer.sign(&msg);
    let key = signer.public_key();
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        scheme.verify(&key, &msg, &sig).expect("valid");
    }
    let verify_rate = n as f64 / t.elapsed().as_secs_f64();
    let sig_bound = verify_rate / sigs_per_block;
    println!(
        "ed25519 verify_strict, 1 core:   {verify_rate:>10.0} signatures/s -> at {sigs_per_block:.0} signatures per block, at most {sig_bound:.1} blocks/s"
    );

    let buf = vec![0xa5u8; 1 << 20];
    let t = Instant::now();
    let rounds = 256;
    for _ in 0..rounds {
        std::hint::black_box(sha256(&[&buf]));
    }
    println!(
        "sha256, 1 core:                  {:>10.0} MB/s",
        rounds as f64 * buf.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
    );
    println!(
        "audit rate / signature-only rate: {:.0}% (target >= 50%)",
        100.0 * audit_blocks / sig_bound
    );
}
