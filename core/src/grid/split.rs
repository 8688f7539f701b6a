//! Splitting a whole-system MATPOWER case into one case per area and the tie lines between
//! the areas, for a consortium whose members each keep only their own area's model (spec
//! 3.8).
//!
//! Every in-service branch whose ends lie in two areas, and every in-service DC line
//! (`mpc.dcline`), becomes a tie line: a scheduled exchange with a capacity per direction
//! (transport model). An area's case keeps the area's buses, the generators at them with their
//! costs, and the branches with both ends in the area, row for row as in the source (cells
//! copied as written, never reformatted); out-of-service branches between areas are dropped.
//! Each area gets exactly one reference bus: the source's, if it lies in the area, else the
//! area's reference bus from `mpc.areas`, else its first generator (type 2) bus, else its
//! first bus.

use std::collections::BTreeMap;

use super::MatpowerError;
use super::matpower::{field, strip_comments};

/// Why a case cannot be split.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// The case is not readable.
    #[error("{0}")]
    Case(#[from] MatpowerError),
    /// A row is too short or not a number where one is needed.
    #[error("`mpc.{field}` row {row}: {reason}")]
    Row {
        /// The matrix.
        field: &'static str,
        /// The row (from 1).
        row: usize,
        /// What is wrong.
        reason: String,
    },
    /// A DC line joins two buses of one area.
    #[error("DC line row {0} lies within one area")]
    DcLineWithinArea(usize),
    /// The cost rows do not match the generators one to one.
    #[error("`mpc.gencost` has {costs} rows for {generators} generators")]
    CostRows {
        /// Cost rows.
        costs: usize,
        /// Generator rows.
        generators: usize,
    },
}

/// Where a tie line comes from in the source case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TieOrigin {
    /// An AC branch (row index in `mpc.branch`, from 0); its capacity is its `rateA` both ways.
    Branch(usize),
    /// A DC line (row index in `mpc.dcline`, from 0); its capacity is `Pmax` forward and
    /// `-Pmin` backward.
    DcLine(usize),
}

/// A tie line between two areas.
#[derive(Clone, Debug, PartialEq)]
pub struct TieBranch {
    /// Where it comes from.
    pub origin: TieOrigin,
    /// The bus where a positive flow leaves.
    pub from_bus: u32,
    /// The bus where a positive flow arrives.
    pub to_bus: u32,
    /// The area of `from_bus`.
    pub from_area: u32,
    /// The area of `to_bus`.
    pub to_area: u32,
    /// Most MW from `from_bus` to `to_bus`.
    pub forward_mw: f64,
    /// Most MW from `to_bus` to `from_bus`.
    pub backward_mw: f64,
}

/// One area's part of the case.
#[derive(Clone, Debug, PartialEq)]
pub struct AreaCase {
    /// The MATPOWER area number.
    pub area: u32,
    /// The area's case, as MATPOWER text.
    pub text: String,
    /// Its reference bus.
    pub reference_bus: u32,
    /// Buses in it.
    pub buses: usize,
    /// Branches in it (in service or not).
    pub branches: usize,
    /// Generator rows in it (in service or not).
    pub generators: usize,
}

/// A case split by area.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The areas, by ascending area number.
    pub areas: Vec<AreaCase>,
    /// The tie lines: tie branches in row order, then DC lines in row order.
    pub ties: Vec<TieBranch>,
}

/// The cells of each row of matrix `name`, as written.
fn cells<'t>(text: &'t str, name: &'static str) -> Option<Vec<Vec<&'t str>>> {
    let body = field(text, name)?;
    Some(
        body.split([';', '\n'])
            .map(|line| {
                line.split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|row| !row.is_empty())
            .collect(),
    )
}

fn value(row: &[&str], column: usize, field: &'static str, i: usize) -> Result<f64, SplitError> {
    let bad = |reason: String| SplitError::Row {
        field,
        row: i + 1,
        reason,
    };
    let cell = row.get(column).ok_or_else(|| {
        bad(format!(
            "{} columns, at least {} needed",
            row.len(),
            column + 1
        ))
    })?;
    match *cell {
        "Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        c => c.parse().map_err(|_| bad(format!("`{c}` is not a number"))),
    }
}

fn matrix_text(name: &str, header: &str, rows: &[Vec<&str>]) -> String {
    let mut out = format!("%% {header}\nmpc.{name} = [\n");
    for row in rows {
        out.push('\t');
        out.push_str(&row.join("\t"));
        out.push_str(";\n");
    }
    out.push_str("];\n");
    out
}

const BUS_HEADER: &str =
    "bus data\n%\tbus_i\ttype\tPd\tQd\tGs\tBs\tarea\tVm\tVa\tbaseKV\tzone\tVmax\tVmin";
const GEN_HEADER: &str =
    "generator data\n%\tbus\tPg\tQg\tQmax\tQmin\tVg\tmBase\tstatus\tPmax\tPmin\t...";
const BRANCH_HEADER: &str =
    "branch data\n%\tfbus\ttbus\tr\tx\tb\trateA\trateB\trateC\tratio\tangle\tstatus\t...";
const COST_HEADER: &str = "generator cost data\n%\t1\tstartup\tshutdown\tn\tx1\ty1\t...\txn\tyn\n%\t2\tstartup\tshutdown\tn\tc(n-1)\t...\tc0";

/// Which bus column makes the consortium's areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SplitColumn {
    /// The bus `area` column (7th): one member per MATPOWER area.
    #[default]
    Area,
    /// The bus `zone` column (11th): one member per loss zone (PEGASE's zones are countries).
    Zone,
}

impl SplitColumn {
    /// The column's index in a `mpc.bus` row.
    pub fn index(self) -> usize {
        match self {
            SplitColumn::Area => 6,
            SplitColumn::Zone => 10,
        }
    }

    /// The column's name, as the areas are named ("Area 3", "Zone 3").
    pub fn name(self) -> &'static str {
        match self {
            SplitColumn::Area => "Area",
            SplitColumn::Zone => "Zone",
        }
    }
}

/// Splits the text of a whole-system case by the bus `area` column.
pub fn split_by_area(text: &str) -> Result<Split, SplitError> {
    split_by(text, SplitColumn::Area)
}

/// Splits the text of a whole-system case by a bus column. A tie branch without a rating
/// (`rateA` 0, unlimited in MATPOWER) gets an infinite capacity here (the consortium bounds
/// it, see [`crate::grid::GridConsortium`]).
pub fn split_by(text: &str, column: SplitColumn) -> Result<Split, SplitError> {
    // Parsing the whole case first checks every number the split does not read itself.
    super::Case::parse(text)?;
    let name = text
        .lines()
        .next()
        .and_then(|l| l.split('=').nth(1))
        .map_or("case", str::trim)
        .to_string();
    let preamble: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('%'))
        .collect();
    let stripped = strip_comments(text);
    let base_mva = field(&stripped, "baseMVA").map_or("100", str::trim);
    let buses = cells(&stripped, "bus").ok_or(MatpowerError::Missing("bus"))?;
    let gens = cells(&stripped, "gen").ok_or(MatpowerError::Missing("gen"))?;
    let branches = cells(&stripped, "branch").ok_or(MatpowerError::Missing("branch"))?;
    let costs = cells(&stripped, "gencost").unwrap_or_default();
    let dclines = cells(&stripped, "dcline").unwrap_or_default();
    let area_refs = cells(&stripped, "areas").unwrap_or_default();
    if !costs.is_empty() && costs.len() != gens.len() {
        return Err(SplitError::CostRows {
            costs: costs.len(),
            generators: gens.len(),
        });
    }

    let mut area_of: BTreeMap<u32, u32> = BTreeMap::new();
    for (i, b) in buses.iter().enumerate() {
        area_of.insert(
            value(b, 0, "bus", i)? as u32,
            value(b, column.index(), "bus", i)? as u32,
        );
    }
    let area_at = |bus: f64, field: &'static str, i: usize| {
        area_of.get(&(bus as u32)).copied().ok_or(SplitError::Row {
            field,
            row: i + 1,
            reason: format!("bus {bus} is not in `mpc.bus`"),
        })
    };

    let mut ties = Vec::new();
    let mut internal: BTreeMap<u32, Vec<Vec<&str>>> = BTreeMap::new();
    for (i, br) in branches.iter().enumerate() {
        let (from, to) = (value(br, 0, "branch", i)?, value(br, 1, "branch", i)?);
        let (a, b) = (area_at(from, "branch", i)?, area_at(to, "branch", i)?);
        if a == b {
            internal.entry(a).or_default().push(br.clone());
        } else if value(br, 10, "branch", i)? > 0.0 {
            let rating = value(br, 5, "branch", i)?;
            let rating = if rating > 0.0 { rating } else { f64::INFINITY };
            ties.push(TieBranch {
                origin: TieOrigin::Branch(i),
                from_bus: from as u32,
                to_bus: to as u32,
                from_area: a,
                to_area: b,
                forward_mw: rating,
                backward_mw: rating,
            });
        }
    }
    for (i, dc) in dclines.iter().enumerate() {
        if value(dc, 2, "dcline", i)? <= 0.0 {
            continue;
        }
        let (from, to) = (value(dc, 0, "dcline", i)?, value(dc, 1, "dcline", i)?);
        let (a, b) = (area_at(from, "dcline", i)?, area_at(to, "dcline", i)?);
        if a == b {
            return Err(SplitError::DcLineWithinArea(i + 1));
        }
        ties.push(TieBranch {
            origin: TieOrigin::DcLine(i),
            from_bus: from as u32,
            to_bus: to as u32,
            from_area: a,
            to_area: b,
            forward_mw: value(dc, 10, "dcline", i)?.max(0.0),
            backward_mw: (-value(dc, 9, "dcline", i)?).max(0.0),
        });
    }

    let mut areas = Vec::new();
    let numbers: std::collections::BTreeSet<u32> = area_of.values().copied().collect();
    for &area in &numbers {
        let mut bus_rows: Vec<Vec<&str>> = buses
            .iter()
            .filter(|b| area_of.get(&(b[0].parse::<f64>().unwrap_or(-1.0) as u32)) == Some(&area))
            .cloned()
            .collect();
        let bus_ids: Vec<u32> = bus_rows
            .iter()
            .map(|b| b[0].parse::<f64>().unwrap_or(-1.0) as u32)
            .collect();
        let kind = |b: &Vec<&str>| b[1].parse::<f64>().unwrap_or(0.0) as u32;
        let reference = match bus_rows.iter().position(|b| kind(b) == 3) {
            Some(r) => r,
            None => {
                let listed = area_refs
                    .iter()
                    .filter(|_| column == SplitColumn::Area)
                    .find(|r| {
                        r.first().and_then(|a| a.parse::<f64>().ok()) == Some(f64::from(area))
                    })
                    .and_then(|r| r.get(1))
                    .and_then(|b| b.parse::<f64>().ok())
                    .and_then(|b| bus_ids.iter().position(|&id| f64::from(id) == b));
                let r = listed
                    .or_else(|| bus_rows.iter().position(|b| kind(b) == 2))
                    .unwrap_or(0);
                bus_rows[r][1] = "3";
                r
            }
        };
        let reference_bus = bus_ids[reference];
        let in_area = |bus: &str| {
            bus.parse::<f64>()
                .is_ok_and(|b| area_of.get(&(b as u32)) == Some(&area))
        };
        let gen_index: Vec<usize> = (0..gens.len()).filter(|&g| in_area(gens[g][0])).collect();
        let gen_rows: Vec<Vec<&str>> = gen_index.iter().map(|&g| gens[g].clone()).collect();
        let cost_rows: Vec<Vec<&str>> = if costs.is_empty() {
            Vec::new()
        } else {
            gen_index.iter().map(|&g| costs[g].clone()).collect()
        };
        let branch_rows = internal.remove(&area).unwrap_or_default();
        let mut text = format!(
            "function mpc = {name}_{lower}{area}\n\
             %{upper}_{label_upper}{area}  {label} {area} of {name}: its buses, the generators at them with\n\
             %   their costs, and the branches with both ends in the area, rows as in the source.\n\
             %   Tie lines to other areas are not here: they are scheduled exchanges (transport\n\
             %   model) in the consortium's genesis, which names their landing buses. Bus\n\
             %   {reference_bus} is the area's reference bus (type 3).\n\
             %\n\
             %   The header of the source case follows, unchanged.\n",
            upper = name.to_uppercase(),
            label = column.name(),
            lower = column.name().to_lowercase(),
            label_upper = column.name().to_uppercase(),
        );
        for line in &preamble {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!(
            "\nmpc.version = '2';\n\n%% system MVA base\nmpc.baseMVA = {base_mva};\n\n"
        ));
        text.push_str(&matrix_text("bus", BUS_HEADER, &bus_rows));
        text.push('\n');
        text.push_str(&matrix_text("gen", GEN_HEADER, &gen_rows));
        text.push('\n');
        text.push_str(&matrix_text("branch", BRANCH_HEADER, &branch_rows));
        if !cost_rows.is_empty() {
            text.push('\n');
            text.push_str(&matrix_text("gencost", COST_HEADER, &cost_rows));
        }
        areas.push(AreaCase {
            area,
            text,
            reference_bus,
            buses: bus_rows.len(),
            branches: branch_rows.len(),
            generators: gen_rows.len(),
        });
    }
    Ok(Split { areas, ties })
}

/// The case text with every branch's rating (`rateA`) at `percent` of what it is: a stressed
/// grid for tests and benchmarks. Only the `mpc.branch` rows change (one row per line, as
/// [`split_by_area`] writes them); everything else is kept as written.
pub fn derate_lines(text: &str, percent: u32) -> Result<String, SplitError> {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    let mut row = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("mpc.branch") {
            inside = true;
        } else if inside && trimmed.starts_with(']') {
            inside = false;
        } else if inside {
            let (data, comment) = line.split_once('%').unwrap_or((line, ""));
            let mut cells: Vec<String> = data
                .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            if !cells.is_empty() {
                let rating = value(
                    &cells.iter().map(String::as_str).collect::<Vec<_>>(),
                    5,
                    "branch",
                    row,
                )?;
                cells[5] = format!("{}", rating * f64::from(percent) / 100.0);
                row += 1;
                out.push('\t');
                out.push_str(&cells.join("\t"));
                out.push(';');
                if !comment.is_empty() {
                    out.push_str(" %");
                    out.push_str(comment);
                }
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Case;

    const TWO_AREAS: &str = "function mpc = two\n% A two-area case.\n\nmpc.baseMVA = 100;\nmpc.bus = [\n 1 3 0 0 0 0 1;\n 2 1 50 0 0 0 1;\n 3 2 0 0 0 0 2;\n 4 1 60 0 0 0 2;\n];\nmpc.gen = [\n 1 0 0 0 0 1 100 1 80 0;\n 3 0 0 0 0 1 100 1 90 0;\n];\nmpc.branch = [\n 1 2 0 0.1 0 40 0 0 0 0 1;\n 3 4 0 0.1 0 45 0 0 0 0 1;\n 2 3 0 0.1 0 30 0 0 0 0 1;\n 1 4 0 0.1 0 25 0 0 0 0 0;\n];\nmpc.gencost = [\n 2 0 0 2 10 0;\n 2 0 0 2 20 0;\n];\nmpc.dcline = [\n 1 4 1 0 0 0 0 1 1 -10 20 0 0 0 0 0 0;\n];\nmpc.areas = [\n 1 1;\n 2 4;\n];\n";

    #[test]
    fn splits_by_area_with_tie_lines_and_one_reference_per_area() {
        let s = split_by_area(TWO_AREAS).unwrap();
        assert_eq!(s.areas.len(), 2);
        // The in-service branch 2-3 and the DC line are tie lines; the branch 1-4 is out.
        assert_eq!(s.ties.len(), 2);
        assert_eq!(
            (
                s.ties[0].origin,
                s.ties[0].from_bus,
                s.ties[0].to_bus,
                s.ties[0].forward_mw
            ),
            (TieOrigin::Branch(2), 2, 3, 30.0)
        );
        assert_eq!(
            (
                s.ties[1].origin,
                s.ties[1].forward_mw,
                s.ties[1].backward_mw
            ),
            (TieOrigin::DcLine(0), 20.0, 10.0)
        );
        // Area 2 takes its reference from `mpc.areas` (bus 4).
        assert_eq!((s.areas[0].reference_bus, s.areas[1].reference_bus), (1, 4));
        for a in &s.areas {
            let c = Case::parse(&a.text).unwrap();
            assert_eq!(
                (c.buses.len(), c.branches.len(), c.generators.len()),
                (2, 1, 1)
            );
            assert_eq!(c.buses.iter().filter(|b| b.kind == 3).count(), 1);
            assert!(c.buses.iter().all(|b| b.area == a.area));
            assert!(
                a.text.contains("% A two-area case."),
                "the source header is kept"
            );
        }
        let two = Case::parse(&s.areas[1].text).unwrap();
        assert_eq!(
            two.costs,
            vec![crate::grid::GenCost::Polynomial(vec![20.0, 0.0])]
        );
        // Derating rewrites the ratings and nothing else.
        let derated = Case::parse(&derate_lines(&s.areas[1].text, 70).unwrap()).unwrap();
        assert_eq!(derated.branches[0].rate_a, 31.5);
        assert_eq!(derated.buses, two.buses);
        // An unrated tie branch is unlimited (MATPOWER's rateA 0): an infinite capacity, which
        // the consortium bounds by the installed generation.
        let unrated = TWO_AREAS.replace(" 2 3 0 0.1 0 30", " 2 3 0 0.1 0 0");
        let s = split_by_area(&unrated).unwrap();
        assert!(s.ties.iter().any(|t| t.forward_mw.is_infinite()));
        // A split by zone reads the 11th column, which these rows do not have: the error
        // names the matrix, the row and what is missing.
        let err = split_by(TWO_AREAS, SplitColumn::Zone)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("`mpc.bus` row 1:"), "{err}");
    }
}
