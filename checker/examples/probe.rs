//! Probe: distinct values per field over random walks.
use stateright::Model as _;
use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use tieline_checker::scenario::Scenario;
fn h<T: Hash>(t: &T) -> u64 { let mut s = DefaultHasher::new(); t.hash(&mut s); s.finish() }
fn main() {
    let name = std::env::args().nth(1).unwrap_or("appeal".into());
    let s = Scenario::named(&name).unwrap();
    let model = s.model(s.bounds, None);
    let mut seen: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    let mut add = |k: String, v: u64| { seen.entry(k).or_default().insert(v); };
    let mut seed: u64 = 7;
    for _run in 0..3000 {
    let mut state = model.init_states().remove(0);
    for _step in 0..3000 {
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let mut next = None;
        while !actions.is_empty() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % actions.len();
            let a = actions.swap_remove(i);
            if let Some(ns) = model.next_state(&state, a.clone()) {
                if stateright::Model::within_boundary(&model, &ns) { next = Some((a, ns)); break; }
            }
        }
        let Some((_a, ns)) = next else { break };
        state = ns;
        add("network".into(), h(&state.network));
        add("timers".into(), h(&state.timers_set));
        add("storages".into(), h(&state.actor_storages));
        add("history".into(), h(&state.history));
        for (i, st) in state.actor_states.iter().enumerate() {
            add(format!("actor{i}"), h(st));
            if let Some(v) = st.node() {
                let n = &v.node;
                add(format!("a{i}.height"), h(&n.height));
                add(format!("a{i}.batches"), h(&n.batches));
                add(format!("a{i}.early"), h(&n.early_batches));
                add(format!("a{i}.proposal"), h(&n.proposal));
                add(format!("a{i}.own"), h(&n.own));
                add(format!("a{i}.lock"), h(&n.lock));
                add(format!("a{i}.votes"), h(&n.votes));
                add(format!("a{i}.seen"), h(&n.seen));
                add(format!("a{i}.voted"), h(&n.voted));
                add(format!("a{i}.skips"), h(&n.skips));
                add(format!("a{i}.offered"), h(&n.offered));
                add(format!("a{i}.negotiation"), h(&n.negotiation));
                add(format!("a{i}.appeals"), h(&n.appeals));
                add(format!("a{i}.forwarded"), h(&n.forwarded));
                add(format!("a{i}.evidence"), h(&n.evidence));
                add(format!("a{i}.sync_from"), h(&n.sync_from));
                add(format!("a{i}.pool"), h(&n.pool));
                add(format!("a{i}.store"), h(&v.store));
                add(format!("a{i}.rv"), h(&v.received_votes));
                add(format!("a{i}.node"), h(&v.node));
            }
        }
        add("all".into(), h(&state.actor_states));
    }
    }
    for (k, v) in seen { println!("{k}: {}", v.len()); }
}
