//! An area's DC network for its private check, factorised once per connected component with a
//! sparse LU (faer), so that a check of a 2,000-bus area costs one sparse solve per product
//! and one per overloaded line, never a dense PTDF.
//!
//! An area's own network may fall apart into several connected components (islands and
//! exclaves joined to the rest of the consortium only through tie lines). Each component has
//! its own angle reference: the case's reference bus if it lies in the component, else its
//! first generator (type 2) bus, else its first bus. A component is balanced by its own bids
//! and tie flows, so its flows do not depend on which of its buses is the reference.

use std::collections::BTreeMap;

use faer::Mat;
use faer::linalg::solvers::Solve;
use faer::sparse::linalg::solvers::Lu;
use faer::sparse::{SparseColMat, Triplet};

use super::{Case, GridError};

/// One connected component of the network.
struct Component {
    /// How many buses the component has besides its reference.
    size: usize,
    /// The reduced susceptance matrix's factorisation (`None` for a single bus).
    lu: Option<Lu<usize, f64>>,
}

/// An in-service branch: its row in the case, its ends (bus positions) and susceptance.
#[derive(Clone, Copy, Debug)]
pub struct NetworkLine {
    /// The branch's row in the case (from 0).
    pub branch: usize,
    /// The `from` bus's position.
    pub from: usize,
    /// The `to` bus's position.
    pub to: usize,
    /// `1 / (x * ratio)`.
    pub susceptance: f64,
}

/// The DC network of a case's in-service buses and branches, per connected component.
pub struct Network {
    /// Bus numbers, in case order (type 4, isolated, buses left out).
    pub buses: Vec<u32>,
    /// The component of each bus.
    pub component_of: Vec<usize>,
    /// The bus's row in its component's reduced system (`None` for the reference).
    slot: Vec<Option<usize>>,
    components: Vec<Component>,
    /// The in-service branches.
    pub lines: Vec<NetworkLine>,
}

impl Network {
    /// The network of `case`: every bus that is not of type 4 (isolated), every in-service
    /// branch between two of them (susceptance `1 / (x * ratio)`, ratio 1 when 0).
    pub fn new(case: &Case) -> Result<Self, GridError> {
        let buses: Vec<u32> = case
            .buses
            .iter()
            .filter(|b| b.kind != 4)
            .map(|b| b.id)
            .collect();
        let position: BTreeMap<u32, usize> =
            buses.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        let mut lines = Vec::new();
        for (i, br) in case.branches.iter().enumerate() {
            if !br.in_service {
                continue;
            }
            let at = |bus: u32| {
                position
                    .get(&bus)
                    .copied()
                    .ok_or(GridError::UnknownBus { branch: i, bus })
            };
            let (from, to) = (at(br.from)?, at(br.to)?);
            let ratio = if br.ratio == 0.0 { 1.0 } else { br.ratio };
            if br.x == 0.0 {
                return Err(GridError::ZeroReactance(i));
            }
            lines.push(NetworkLine {
                branch: i,
                from,
                to,
                susceptance: 1.0 / (br.x * ratio),
            });
        }
        // Connected components, by union-find over the lines.
        let n = buses.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut a: usize) -> usize {
            while parent[a] != a {
                parent[a] = parent[parent[a]];
                a = parent[a];
            }
            a
        }
        for l in &lines {
            let (a, b) = (root(&mut parent, l.from), root(&mut parent, l.to));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
        let mut index_of_root: BTreeMap<usize, usize> = BTreeMap::new();
        let mut component_of = vec![0; n];
        for (k, c) in component_of.iter_mut().enumerate() {
            let r = root(&mut parent, k);
            let next = index_of_root.len();
            *c = *index_of_root.entry(r).or_insert(next);
        }
        let kind: BTreeMap<u32, u8> = case.buses.iter().map(|b| (b.id, b.kind)).collect();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); index_of_root.len()];
        for (k, &c) in component_of.iter().enumerate() {
            members[c].push(k);
        }
        let mut slot = vec![None; n];
        let mut components = Vec::with_capacity(members.len());
        for buses_of in &members {
            let pick = |t: u8| buses_of.iter().copied().find(|&k| kind[&buses[k]] == t);
            let reference = pick(3).or_else(|| pick(2)).unwrap_or(buses_of[0]);
            let mut size = 0;
            for &k in buses_of {
                if k != reference {
                    slot[k] = Some(size);
                    size += 1;
                }
            }
            components.push(Component { size, lu: None });
        }
        // The reduced susceptance matrix of each component, factorised.
        let mut entries: Vec<BTreeMap<(usize, usize), f64>> =
            vec![BTreeMap::new(); components.len()];
        for l in &lines {
            let c = component_of[l.from];
            for (u, v, s) in [
                (l.from, l.from, l.susceptance),
                (l.to, l.to, l.susceptance),
                (l.from, l.to, -l.susceptance),
                (l.to, l.from, -l.susceptance),
            ] {
                if let (Some(i), Some(j)) = (slot[u], slot[v]) {
                    *entries[c].entry((i, j)).or_insert(0.0) += s;
                }
            }
        }
        for (c, component) in components.iter_mut().enumerate() {
            if component.size == 0 {
                continue;
            }
            let triplets: Vec<Triplet<usize, usize, f64>> = entries[c]
                .iter()
                .map(|(&(i, j), &v)| Triplet::new(i, j, v))
                .collect();
            let m = SparseColMat::<usize, f64>::try_new_from_triplets(
                component.size,
                component.size,
                &triplets,
            )
            .map_err(|_| GridError::Singular)?;
            let lu = m.sp_lu().map_err(|_| GridError::Singular)?;
            component.lu = Some(lu);
        }
        let network = Network {
            buses,
            component_of,
            slot,
            components,
            lines,
        };
        network.check_solvable()?;
        Ok(network)
    }

    /// How many connected components the network has.
    pub fn components(&self) -> usize {
        self.components.len()
    }

    /// A factorisation of a singular matrix does not fail by itself: solve one system per
    /// component and refuse a result that is not finite.
    fn check_solvable(&self) -> Result<(), GridError> {
        let ones = vec![1.0; self.buses.len()];
        if self.angles(&ones).iter().all(|a| a.is_finite()) {
            Ok(())
        } else {
            Err(GridError::Singular)
        }
    }

    /// The bus angles (per unit of the injections' unit over susceptance) for injections at
    /// every bus (by position), each component's imbalance withdrawn at its reference.
    pub fn angles(&self, injection: &[f64]) -> Vec<f64> {
        let mut theta = vec![0.0; self.buses.len()];
        let mut rhs: Vec<Mat<f64>> = self
            .components
            .iter()
            .map(|c| Mat::zeros(c.size, 1))
            .collect();
        for (k, &x) in injection.iter().enumerate() {
            if let Some(i) = self.slot[k] {
                rhs[self.component_of[k]][(i, 0)] = x;
            }
        }
        for (c, component) in self.components.iter().enumerate() {
            if let Some(lu) = &component.lu {
                lu.solve_in_place(&mut rhs[c]);
            }
        }
        for (k, t) in theta.iter_mut().enumerate() {
            if let Some(i) = self.slot[k] {
                *t = rhs[self.component_of[k]][(i, 0)];
            }
        }
        theta
    }

    /// The flow on `line` at `angles`, from its `from` bus.
    pub fn flow(&self, line: &NetworkLine, angles: &[f64]) -> f64 {
        line.susceptance * (angles[line.from] - angles[line.to])
    }

    /// The PTDF row of `line`: the flow on it per unit injected at each bus of its component
    /// and withdrawn at the component's reference, as (bus position, factor) with the zero
    /// factors left out. The susceptance matrix is symmetric, so this is one solve.
    pub fn ptdf_row(&self, line: &NetworkLine) -> Vec<(usize, f64)> {
        let c = self.component_of[line.from];
        let component = &self.components[c];
        let Some(lu) = &component.lu else {
            return Vec::new();
        };
        let mut rhs = Mat::<f64>::zeros(component.size, 1);
        for (bus, s) in [(line.from, line.susceptance), (line.to, -line.susceptance)] {
            if let Some(i) = self.slot[bus] {
                rhs[(i, 0)] += s;
            }
        }
        lu.solve_in_place(&mut rhs);
        (0..self.buses.len())
            .filter(|&k| self.component_of[k] == c)
            .filter_map(|k| {
                let f = self.slot[k].map_or(0.0, |i| rhs[(i, 0)]);
                (f != 0.0).then_some((k, f))
            })
            .collect()
    }
}
