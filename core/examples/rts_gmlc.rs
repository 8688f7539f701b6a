//! Writes the shipped RTS-GMLC consortium (`data/rts-gmlc/`) from the source case in that
//! folder: the genesis (tie lines at 100% of their ratings), one MATPOWER area file per member
//! and the participants' offers. The test `rts_gmlc_data_files_are_regenerated_exactly`
//! checks that the committed files are what this writes.
//!
//! `cargo run -p tieline-core --example rts_gmlc [-- <folder>]` (default `data/rts-gmlc`).

use std::path::PathBuf;

use tieline_core::grid::{GridConsortium, GridConsortiumOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/rts-gmlc"),
        PathBuf::from,
    );
    let source = std::fs::read_to_string(dir.join("case_RTS_GMLC.m"))?;
    let c = GridConsortium::from_case(&source, &GridConsortiumOptions::rts_gmlc(100))?;
    std::fs::write(dir.join("genesis.toml"), c.genesis.to_toml())?;
    for f in &c.area_files {
        std::fs::write(dir.join(&f.file_name), &f.text)?;
    }
    std::fs::write(dir.join("offers.csv"), c.offers_csv())?;
    println!(
        "wrote {}: genesis.toml, {} area files, offers.csv ({} participants, {} tie lines)",
        dir.display(),
        c.area_files.len(),
        c.offers.len(),
        c.genesis.tie_lines.len()
    );
    Ok(())
}
