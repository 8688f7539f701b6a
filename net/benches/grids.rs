//! The grid benchmark: public MATPOWER cases as consortia (one member per area or zone),
//! negotiated through the real consensus in memory with every member checking its own area,
//! beside the centralised DC optimal power flow solved by HiGHS (the independent reference of
//! `core/tests/fixtures/grids/reference.py`) on the same bids in the same run.
//!
//!     pip install numpy scipy highspy
//!     cargo bench -p tieline-net --bench grids
//!
//! For each case it prints members, tie lines, bids, islands, revisions, cuts, the negotiation
//! wall time (every member's work on this machine's cores), its compute-only critical path
//! (each member on its own machine, network round trips aside), the slowest member's mean area
//! check, the centralised LP's solve time and the ratio of each time to it, and the relative
//! gap of the negotiated generation cost to the reference.
//! `CASES` (comma-separated, from `500-zone-100,500-zone-20,2000-area-100,2000-area-40,
//! 9241-zone-100`; default all but PEGASE 9241) picks the cases; `PYTHON` names the
//! interpreter (default `python3`); without it (or its packages) the LP columns are left out.

use std::path::{Path, PathBuf};
use std::process::Command;

use tieline_core::grid::SplitColumn;
use tieline_net::gridcase::{self, GridOptions};

struct Scenario {
    key: &'static str,
    file: &'static str,
    split: SplitColumn,
    tie: u32,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        key: "500-zone-100",
        file: "case_ACTIVSg500",
        split: SplitColumn::Zone,
        tie: 100,
    },
    Scenario {
        key: "500-zone-20",
        file: "case_ACTIVSg500",
        split: SplitColumn::Zone,
        tie: 20,
    },
    Scenario {
        key: "2000-area-100",
        file: "case_ACTIVSg2000",
        split: SplitColumn::Area,
        tie: 100,
    },
    Scenario {
        key: "2000-area-40",
        file: "case_ACTIVSg2000",
        split: SplitColumn::Area,
        tie: 40,
    },
    Scenario {
        key: "9241-zone-100",
        file: "case9241pegase",
        split: SplitColumn::Zone,
        tie: 100,
    },
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The reference's JSON for `offers` (its `lp_seconds` and `total_cost`), if Python runs.
fn reference(s: &Scenario, offers: &Path) -> Option<serde_json::Value> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let split = match s.split {
        SplitColumn::Area => "area",
        SplitColumn::Zone => "zone",
    };
    let out = Command::new(python)
        .current_dir(root())
        .args(["core/tests/fixtures/grids/reference.py", "--case"])
        .arg(format!("data/grids/{}.m", s.file))
        .args(["--split", split, "--tie-rating"])
        .arg(s.tie.to_string())
        .args(["--line-rating", "100", "--offers"])
        .arg(offers)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "reference for {} failed: {}",
            s.key,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn main() {
    let wanted = std::env::var("CASES")
        .unwrap_or_else(|_| "500-zone-100,500-zone-20,2000-area-100,2000-area-40".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let tmp = std::env::temp_dir().join(format!("tieline-grid-bench-{}", std::process::id()));
    println!(
        "{:<14} {:>7} {:>5} {:>6} {:>7} {:>4} {:>5} {:>9} {:>7} {:>9} {:>8} {:>7} {:>7} {:>9}",
        "case",
        "members",
        "ties",
        "bids",
        "islands",
        "rev",
        "cuts",
        "negot. s",
        "crit. s",
        "check ms",
        "LP s",
        "ratio",
        "crit. r",
        "gap"
    );
    for s in SCENARIOS.iter().filter(|s| wanted.contains(&s.key)) {
        let text = std::fs::read_to_string(root().join("data/grids").join(format!("{}.m", s.file)))
            .expect("the case file");
        let options = GridOptions {
            split: s.split,
            tie_rating_percent: s.tie,
            line_rating_percent: 100,
            polynomial_segments: tieline_core::grid::DEFAULT_POLYNOMIAL_SEGMENTS,
            // `tieline grid`'s default (PEGASE 9241 by zone takes 4 revisions).
            max_revisions: 64,
        };
        let (c, setup) = gridcase::consortium(&text, &options).expect("a consortium");
        let dir = tmp.join(s.key);
        gridcase::write_out(&c, &dir).expect("write the consortium's files");
        let report = gridcase::negotiate(&c, setup).expect("a negotiation");
        let islands: usize = report.members.iter().map(|m| m.components).sum();
        let reference = reference(s, &dir.join("offers.csv"));
        let lp = reference.as_ref().and_then(|r| r["lp_seconds"].as_f64());
        let gap = reference
            .as_ref()
            .and_then(|r| r["total_cost"].as_f64())
            .map(|x| (report.cost - x).abs() / x);
        println!(
            "{:<14} {:>7} {:>5} {:>6} {:>7} {:>4} {:>5} {:>9.3} {:>7.3} {:>9.3} {:>8} {:>7} {:>7} {:>9}",
            s.key,
            report.members.len(),
            report.tie_lines,
            report.bids,
            islands,
            report.revisions,
            report.cuts,
            report.seconds,
            report.critical_path_seconds,
            report.slowest_check_seconds() * 1e3,
            lp.map_or("-".into(), |x| format!("{x:.3}")),
            lp.map_or("-".into(), |x| format!("{:.1}x", report.seconds / x)),
            lp.map_or("-".into(), |x| {
                format!("{:.1}x", report.critical_path_seconds / x)
            }),
            gap.map_or("-".into(), |g| format!("{g:.2e}")),
        );
        if report.view > 0 {
            println!(
                "  {}: committed in view {} after fault skips; {:.1} of {:.1} MWh served",
                s.key, report.view, report.served_mwh, report.demand_mwh
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
