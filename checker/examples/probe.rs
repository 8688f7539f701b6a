use stateright::Model as _;
use tieline_checker::scenario::Scenario;
fn main() {
    let s = Scenario::crash();
    let model = s.model(s.bounds, None);
    let mut state = model.init_states().remove(0);
    let mut seed: u64 = 7;
    for step in 0..3000 {
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
        let Some((a, ns)) = next else { println!("terminal at {step}"); break };
        state = ns;
        if step % 500 == 0 || step > 2990 {
            let recs: Vec<usize> = state.actor_storages.iter().map(|s| s.as_ref().map_or(0, |s| s.records.len())).collect();
            println!("{step}: net {} recs {:?} held {} skip {} action {:?}", state.network.len(), recs, state.history.held.len(), state.history.before_skip.len(), format!("{a:?}").chars().take(150).collect::<String>());
            for st in &state.actor_states { if let Some(v) = st.node() { println!("   h{} v{} votes {} seen {} skips {:?} pool {}", v.node.height, v.node.view, v.node.votes.len(), v.node.seen.len(), v.node.skips.keys().collect::<Vec<_>>(), v.node.pool.len()); } }
        }
    }
}
