//! DC power transfer distribution factors and the line-limit cuts they give.

use crate::clearing::{COEFFICIENT_SCALE, Cut, CutTerm, CutVariable};
use crate::market::Product;
use crate::units::{BusId, Quantity};

use super::Case;

/// Most buses a PTDF is computed for (the computation is dense).
pub const MAX_PTDF_BUSES: usize = 2_000;

/// Why a PTDF cannot be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GridError {
    /// The case has no reference bus.
    #[error("the case has no reference bus (type 3)")]
    NoReference,
    /// A branch names a bus the case does not have.
    #[error("branch {branch} names unknown bus {bus}")]
    UnknownBus {
        /// The branch's index.
        branch: usize,
        /// The bus number.
        bus: u32,
    },
    /// A branch has zero reactance.
    #[error("branch {0} has zero reactance")]
    ZeroReactance(usize),
    /// The network is not connected, so the susceptance matrix is singular.
    #[error("the network is not connected (singular susceptance matrix)")]
    Singular,
    /// Too many buses.
    #[error("{0} buses exceed the limit of {MAX_PTDF_BUSES}")]
    TooLarge(usize),
}

/// The PTDF matrix: the flow on each in-service branch (MW, positive from its `from` bus) per
/// MW injected at each bus and withdrawn at the reference bus.
#[derive(Clone, Debug, PartialEq)]
pub struct Ptdf {
    /// Bus numbers, in case order (the columns).
    pub buses: Vec<u32>,
    /// Indices into the case's branches of the in-service ones (the rows).
    pub branches: Vec<usize>,
    /// `factors[row][column]`.
    pub factors: Vec<Vec<f64>>,
}

impl Ptdf {
    /// Computes the DC PTDF of `case` (branch susceptance `1 / (x * ratio)`), relative to its
    /// reference bus. In a balanced schedule the reference does not matter.
    pub fn compute(case: &Case) -> Result<Self, GridError> {
        let n = case.buses.len();
        if n > MAX_PTDF_BUSES {
            return Err(GridError::TooLarge(n));
        }
        let buses: Vec<u32> = case.buses.iter().map(|b| b.id).collect();
        let col = |id: u32| buses.iter().position(|&b| b == id);
        let reference = case
            .buses
            .iter()
            .position(|b| b.kind == 3)
            .ok_or(GridError::NoReference)?;
        let mut lines = Vec::new();
        for (i, br) in case.branches.iter().enumerate() {
            if !br.in_service {
                continue;
            }
            let f = col(br.from).ok_or(GridError::UnknownBus {
                branch: i,
                bus: br.from,
            })?;
            let t = col(br.to).ok_or(GridError::UnknownBus {
                branch: i,
                bus: br.to,
            })?;
            let ratio = if br.ratio == 0.0 { 1.0 } else { br.ratio };
            if br.x == 0.0 {
                return Err(GridError::ZeroReactance(i));
            }
            lines.push((i, f, t, 1.0 / (br.x * ratio)));
        }
        // Reduced susceptance matrix without the reference bus, then its inverse.
        let red: Vec<usize> = (0..n).filter(|&k| k != reference).collect();
        let pos = |k: usize| red.iter().position(|&r| r == k);
        let m = red.len();
        let mut a = vec![vec![0.0; 2 * m]; m];
        for &(_, f, t, b) in &lines {
            for (u, v, s) in [(f, f, b), (t, t, b), (f, t, -b), (t, f, -b)] {
                if let (Some(i), Some(j)) = (pos(u), pos(v)) {
                    a[i][j] += s;
                }
            }
        }
        for (i, row) in a.iter_mut().enumerate() {
            row[m + i] = 1.0;
        }
        // Gauss-Jordan elimination with partial pivoting: m steps of O(m^2).
        for c in 0..m {
            let p = (c..m)
                .max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))
                .unwrap_or(c);
            if a[p][c].abs() < 1e-12 {
                return Err(GridError::Singular);
            }
            a.swap(c, p);
            let d = a[c][c];
            for v in a[c].iter_mut() {
                *v /= d;
            }
            let pivot = a[c].clone();
            for (r, row) in a.iter_mut().enumerate() {
                if r != c && row[c] != 0.0 {
                    let k = row[c];
                    for (v, pv) in row.iter_mut().zip(&pivot) {
                        *v -= k * pv;
                    }
                }
            }
        }
        // Angle at bus u per MW injected at bus k: inverse[u][k] (zero at the reference).
        let theta = |u: usize, k: usize| match (pos(u), pos(k)) {
            (Some(i), Some(j)) => a[i][m + j],
            _ => 0.0,
        };
        let factors = lines
            .iter()
            .map(|&(_, f, t, b)| (0..n).map(|k| b * (theta(f, k) - theta(t, k))).collect())
            .collect();
        Ok(Ptdf {
            buses,
            branches: lines.iter().map(|l| l.0).collect(),
            factors,
        })
    }

    /// The factor of branch `branch` (case index) for an injection at bus `bus`.
    pub fn factor(&self, branch: usize, bus: u32) -> Option<f64> {
        let r = self.branches.iter().position(|&b| b == branch)?;
        let c = self.buses.iter().position(|&b| b == bus)?;
        Some(self.factors[r][c])
    }
}

/// The cuts that keep every rated in-service branch of `case` within its rating in both
/// directions, over the net injections `injections` (a cut variable and the bus it sits at):
/// `sum(PTDF * injection) <= rating * hours` and `sum(-PTDF * injection) <= rating * hours`,
/// coefficients rounded to millionths. Labels are `2 * branch` (forward) and `2 * branch + 1`.
/// The schedule must balance over the injections, as it does within one area.
pub fn line_limit_cuts(
    case: &Case,
    ptdf: &Ptdf,
    product: Product,
    injections: &[(CutVariable, BusId)],
) -> Vec<Cut> {
    let hours = f64::from(product.delivery_minutes) / 60.0;
    let mut cuts = Vec::new();
    for (row, &b) in ptdf.branches.iter().enumerate() {
        let rating = case.branches[b].rate_a;
        if rating <= 0.0 {
            continue;
        }
        let limit = Quantity::from_f64(rating * hours).unwrap_or(Quantity(i64::MAX));
        for (dir, sign) in [(0u32, 1.0), (1, -1.0)] {
            let terms: Vec<CutTerm> = injections
                .iter()
                .filter_map(|&(variable, bus)| {
                    let c = ptdf.buses.iter().position(|&x| x == bus.0)?;
                    let coefficient =
                        (sign * ptdf.factors[row][c] * COEFFICIENT_SCALE as f64).round() as i64;
                    (coefficient != 0).then_some(CutTerm {
                        variable,
                        coefficient,
                    })
                })
                .collect();
            cuts.push(Cut {
                product,
                label: 2 * b as u32 + dir,
                terms,
                limit,
            });
        }
    }
    cuts
}
