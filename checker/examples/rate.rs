use stateright::{Checker, Model};
use std::time::Instant;
use tieline_checker::scenario::Scenario;
fn main() {
    let which = std::env::args().nth(1).unwrap_or("none".into());
    let s = Scenario::crash();
    let mut model = s.model(s.bounds, None);
    let keep: Vec<&str> = which.split(',').collect();
    model.properties.retain(|p| keep.contains(&p.name) || p.name == "S1");
    let start = Instant::now();
    let c = model.checker().threads(1).target_state_count(15000).spawn_dfs().join();
    println!("{which}: {} states {} unique in {:?} -> {:.0}/s", c.state_count(), c.unique_state_count(), start.elapsed(), c.state_count() as f64 / start.elapsed().as_secs_f64());
}
