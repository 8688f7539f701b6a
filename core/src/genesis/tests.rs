use super::*;

#[test]
fn quorum_sizes() {
    let crash = |f| FaultModel {
        kind: FaultKind::Crash,
        f,
    };
    let byz = |f| FaultModel {
        kind: FaultKind::Byzantine,
        f,
    };
    assert_eq!((crash(1).min_members(), crash(1).quorum(3)), (3, 2));
    assert_eq!(crash(2).quorum(5), 3);
    assert_eq!(crash(1).quorum(4), 3);
    assert_eq!((byz(1).min_members(), byz(1).quorum(4)), (4, 3));
    assert_eq!(byz(2).quorum(7), 5);
    assert_eq!(byz(1).quorum(5), 4);
    // Any two quorums overlap in more than f nodes, and n - f nodes form a quorum.
    for f in 0..5u16 {
        for extra in 0..4usize {
            for m in [crash(f), byz(f)] {
                let n = m.min_members() + extra;
                let q = m.quorum(n);
                let overlap = 2 * q - n;
                let need = if m.kind == FaultKind::Byzantine {
                    usize::from(f) + 1
                } else {
                    1
                };
                assert!(overlap >= need, "{m:?} n={n} q={q}");
                assert!(q <= n - usize::from(f), "{m:?} n={n} q={q}");
            }
        }
    }
}

#[test]
fn rotation_follows_the_formula() {
    let mut g = crate::sample::SampleConsortium::new(4, 0).genesis;
    g.rotation_period = 3;
    let ids: Vec<u16> = g.members.iter().map(|m| m.id.0).collect();
    for h in 0..30u64 {
        for v in 0..6u32 {
            let expect = ids[((h / 3 + u64::from(v)) % 4) as usize];
            assert_eq!(g.primary(h, v).0, expect);
        }
    }
}
