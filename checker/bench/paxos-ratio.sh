#!/usr/bin/env bash
# States per second of tieline-check beside stateright's own paxos example (`check-dfs 3`),
# measured in one run on one machine: paxos, then the scenarios, then paxos again.
#
#   checker/bench/paxos-ratio.sh [SCENARIO|all] [MAX_SECONDS]
#
# The paxos example is built from the stateright crate's own source in cargo's registry (the
# checker's build downloads it); nothing of it is kept in this repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario="${1:-all}"
max_seconds="${2:-300}"

cargo build --release -q -p tieline-checker
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/stateright-0.31.*/examples/paxos.rs | sort | tail -1)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/Cargo.toml" <<'TOML'
[package]
name = "paxos-bench"
version = "0.1.0"
edition = "2021"
[dependencies]
stateright = "=0.31.0"
env_logger = "0.10"
pico-args = "0.5"
num_cpus = "1"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
[[bin]]
name = "paxos"
path = "paxos.rs"
[workspace]
TOML
cp "$src" "$dir/paxos.rs"
(cd "$dir" && cargo build --release -q)

paxos() {
    local start end states
    start=$(date +%s.%N)
    states=$("$dir/target/release/paxos" check-dfs 3 2>&1 | sed -n 's/^Done\. states=\([0-9]*\).*/\1/p')
    end=$(date +%s.%N)
    python3 -c "print(f'{$states / ($end - $start):.0f}')"
}

before=$(paxos)
./target/release/tieline-check check --scenario "$scenario" --max-seconds "$max_seconds" --json \
    > "$dir/check.json" 2> /dev/null || true
after=$(paxos)
python3 - "$dir/check.json" "$before" "$after" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
paxos = (float(sys.argv[2]) + float(sys.argv[3])) / 2
print(f"paxos check-dfs 3: {float(sys.argv[2]):,.0f} and {float(sys.argv[3]):,.0f} states/s (mean {paxos:,.0f})")
print(f"{'scenario':<16}{'unique':>12}{'total':>14}{'depth':>7}{'seconds':>9}{'states/s':>11}{'ratio':>7}  exhaustive")
for s in doc["scenarios"]:
    print(f"{s['name']:<16}{s['unique_states']:>12,}{s['total_states']:>14,}{s['max_depth']:>7}"
          f"{s['seconds']:>9.1f}{s['states_per_second']:>11,.0f}{s['states_per_second'] / paxos:>7.2f}  {s['exhaustive']}")
PY
