//! A reader of MATPOWER case files (version 2): `mpc.baseMVA`, `mpc.bus`, `mpc.gen`,
//! `mpc.branch` and `mpc.gencost`, with MATPOWER's column meanings.

/// Most rows in one matrix of a case.
pub const MAX_ROWS: usize = 100_000;
/// Most columns in one row.
pub const MAX_COLUMNS: usize = 64;
/// Largest case text read, in bytes.
pub const MAX_CASE_BYTES: usize = 64 * 1024 * 1024;

/// Why a case cannot be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MatpowerError {
    /// A required field is missing.
    #[error("the case has no `mpc.{0}`")]
    Missing(&'static str),
    /// A value is not a number, or a row is too short.
    #[error("`mpc.{field}` row {row}: {reason}")]
    Row {
        /// The matrix.
        field: &'static str,
        /// The row (from 1).
        row: usize,
        /// What is wrong.
        reason: String,
    },
    /// The case is larger than this reader accepts.
    #[error("the case exceeds {0}")]
    TooLarge(String),
}

/// A bus (MATPOWER `bus` row).
#[derive(Clone, Debug, PartialEq)]
pub struct Bus {
    /// Bus number.
    pub id: u32,
    /// Type: 1 PQ, 2 PV, 3 reference, 4 isolated.
    pub kind: u8,
    /// Real power demand, MW.
    pub pd: f64,
    /// Area number.
    pub area: u32,
    /// Loss zone number (the area's when the row has no zone column).
    pub zone: u32,
}

/// A generator (MATPOWER `gen` row).
#[derive(Clone, Debug, PartialEq)]
pub struct Generator {
    /// Bus number.
    pub bus: u32,
    /// Real power output in the case, MW.
    pub pg: f64,
    /// Most real power, MW.
    pub pmax: f64,
    /// Least real power, MW.
    pub pmin: f64,
    /// In service.
    pub in_service: bool,
}

/// A branch (MATPOWER `branch` row).
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    /// From bus number.
    pub from: u32,
    /// To bus number.
    pub to: u32,
    /// Series reactance, p.u.
    pub x: f64,
    /// Long-term rating, MVA; zero means unlimited.
    pub rate_a: f64,
    /// Transformer off-nominal turns ratio; zero means a line (ratio 1).
    pub ratio: f64,
    /// In service.
    pub in_service: bool,
}

/// A generator's cost (MATPOWER `gencost` row).
#[derive(Clone, Debug, PartialEq)]
pub enum GenCost {
    /// Model 2: cost = sum of `coefficients[i] * P^(n-1-i)`, $/h with P in MW.
    Polynomial(Vec<f64>),
    /// Model 1: (MW, $/h) breakpoints.
    PiecewiseLinear(Vec<(f64, f64)>),
}

impl GenCost {
    /// The marginal cost at `p` MW, $/MWh.
    pub fn marginal(&self, p: f64) -> f64 {
        match self {
            GenCost::Polynomial(c) => {
                let n = c.len();
                c.iter()
                    .enumerate()
                    .take(n.saturating_sub(1))
                    .map(|(i, &a)| {
                        let power = (n - 1 - i) as i32;
                        a * f64::from(power) * p.powi(power - 1)
                    })
                    .sum()
            }
            GenCost::PiecewiseLinear(pts) => pts
                .windows(2)
                .find(|w| p <= w[1].0)
                .or(pts.windows(2).last())
                .map_or(0.0, |w| (w[1].1 - w[0].1) / (w[1].0 - w[0].0)),
        }
    }
}

/// A MATPOWER case.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// System MVA base.
    pub base_mva: f64,
    /// Buses.
    pub buses: Vec<Bus>,
    /// Generators.
    pub generators: Vec<Generator>,
    /// Branches.
    pub branches: Vec<Branch>,
    /// Costs, one per generator (empty if the case has none).
    pub costs: Vec<GenCost>,
}

/// Removes `%` comments.
pub(super) fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.split('%').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The body of `mpc.<name> = ...;` (matrix bodies without brackets).
pub(super) fn field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let key = format!("mpc.{name}");
    let mut from = 0;
    while let Some(at) = text[from..].find(&key) {
        let start = from + at + key.len();
        let rest = text[start..].trim_start();
        if let Some(rest) = rest.strip_prefix('=') {
            let rest = rest.trim_start();
            return Some(if let Some(body) = rest.strip_prefix('[') {
                &body[..body.find(']').unwrap_or(body.len())]
            } else {
                &rest[..rest.find(';').unwrap_or(rest.len())]
            });
        }
        from = start;
    }
    None
}

fn number(s: &str) -> Option<f64> {
    match s {
        "Inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// The rows of a matrix field.
fn matrix(text: &str, name: &'static str) -> Result<Vec<Vec<f64>>, MatpowerError> {
    let body = field(text, name).ok_or(MatpowerError::Missing(name))?;
    let mut rows = Vec::new();
    for line in body.split([';', '\n']) {
        let cells: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|c| !c.is_empty())
            .collect();
        if cells.is_empty() {
            continue;
        }
        if rows.len() >= MAX_ROWS || cells.len() > MAX_COLUMNS {
            return Err(MatpowerError::TooLarge(format!(
                "{MAX_ROWS} rows or {MAX_COLUMNS} columns in `mpc.{name}`"
            )));
        }
        let row = rows.len() + 1;
        let values = cells
            .iter()
            .map(|c| {
                number(c).ok_or_else(|| MatpowerError::Row {
                    field: name,
                    row,
                    reason: format!("`{c}` is not a number"),
                })
            })
            .collect::<Result<Vec<f64>, _>>()?;
        rows.push(values);
    }
    Ok(rows)
}

fn need(row: &[f64], n: usize, field: &'static str, i: usize) -> Result<(), MatpowerError> {
    if row.len() < n {
        return Err(MatpowerError::Row {
            field,
            row: i + 1,
            reason: format!("{} columns, at least {n} needed", row.len()),
        });
    }
    Ok(())
}

impl Case {
    /// Parses the text of a MATPOWER case file.
    pub fn parse(text: &str) -> Result<Self, MatpowerError> {
        if text.len() > MAX_CASE_BYTES {
            return Err(MatpowerError::TooLarge(format!("{MAX_CASE_BYTES} bytes")));
        }
        let text = strip_comments(text);
        let base_mva = field(&text, "baseMVA")
            .and_then(|v| number(v.trim()))
            .ok_or(MatpowerError::Missing("baseMVA"))?;
        let buses = matrix(&text, "bus")?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                need(r, 7, "bus", i)?;
                Ok(Bus {
                    id: r[0] as u32,
                    kind: r[1] as u8,
                    pd: r[2],
                    area: r[6] as u32,
                    zone: r.get(10).map_or(r[6] as u32, |&z| z as u32),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let generators = matrix(&text, "gen")?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                need(r, 10, "gen", i)?;
                Ok(Generator {
                    bus: r[0] as u32,
                    pg: r[1],
                    pmax: r[8],
                    pmin: r[9],
                    in_service: r[7] > 0.0,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let branches = matrix(&text, "branch")?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                need(r, 11, "branch", i)?;
                Ok(Branch {
                    from: r[0] as u32,
                    to: r[1] as u32,
                    x: r[3],
                    rate_a: r[5],
                    ratio: r[8],
                    in_service: r[10] > 0.0,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let costs = match field(&text, "gencost") {
            None => Vec::new(),
            Some(_) => matrix(&text, "gencost")?
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    need(r, 4, "gencost", i)?;
                    let n = r[3] as usize;
                    let bad = |reason: String| MatpowerError::Row {
                        field: "gencost",
                        row: i + 1,
                        reason,
                    };
                    match r[0] as u8 {
                        1 => {
                            need(r, 4 + 2 * n, "gencost", i)?;
                            Ok(GenCost::PiecewiseLinear(
                                (0..n).map(|k| (r[4 + 2 * k], r[5 + 2 * k])).collect(),
                            ))
                        }
                        2 => {
                            need(r, 4 + n, "gencost", i)?;
                            Ok(GenCost::Polynomial(r[4..4 + n].to_vec()))
                        }
                        m => Err(bad(format!("cost model {m} is neither 1 nor 2"))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Case {
            base_mva,
            buses,
            generators,
            branches,
            costs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_matrices_comments_and_costs() {
        let text = "function mpc = t\n% comment\nmpc.baseMVA = 100;\nmpc.bus = [\n 1 3 0 0 0 0 1 1 0 230 1 1.1 0.9;\n 2 1 50 0 0 0 2 1 0 230 1 1.1 0.9; % load\n];\nmpc.gen = [1 60 0 0 0 1 100 1 80 5 0 0 0 0 0 0 0 0 0 0 0];\nmpc.branch = [1 2 0 0.1 0 30 30 30 0 0 1 -360 360];\nmpc.gencost = [\n 2 0 0 3 0.5 12 0;\n];\n";
        let c = Case::parse(text).unwrap();
        assert_eq!(c.base_mva, 100.0);
        assert_eq!(c.buses.len(), 2);
        assert_eq!(
            (c.buses[1].id, c.buses[1].pd, c.buses[1].area),
            (2, 50.0, 2)
        );
        assert_eq!(c.generators[0].pmax, 80.0);
        assert_eq!(c.generators[0].pmin, 5.0);
        assert_eq!(c.branches[0].rate_a, 30.0);
        assert_eq!(c.costs[0], GenCost::Polynomial(vec![0.5, 12.0, 0.0]));
        assert_eq!(c.costs[0].marginal(10.0), 22.0);
        assert!(matches!(
            Case::parse("mpc.baseMVA = 100;"),
            Err(MatpowerError::Missing("bus"))
        ));
        assert!(matches!(
            Case::parse("mpc.baseMVA = 1; mpc.bus = [1 x 0 0 0 0 1];"),
            Err(MatpowerError::Row { row: 1, .. })
        ));
    }
}
