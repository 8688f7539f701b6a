//! The Merkle tree over a block's trades and its inclusion proofs (spec D5).
//!
//! The tree is the one of RFC 9162 (Certificate Transparency 2.0): leaves are hashed as
//! `SHA-256(0x00 || leaf bytes)`, inner nodes as `SHA-256(0x01 || left || right)`, an odd node
//! at the end of a level moves up unchanged (it is never paired with itself, so no two lists of
//! leaves share a root), and the empty tree's root is `SHA-256("")`. The domain bytes keep a leaf
//! from ever passing for an inner node.

use crate::crypto::{Digest, sha256};
use crate::encoding::Tagged;

/// Longest proof path: enough for 2^48 leaves.
pub const MAX_PROOF_LEN: usize = 48;

/// The hash of one leaf's bytes.
pub fn leaf_hash(bytes: &[u8]) -> Digest {
    sha256(&[&[0x00], bytes])
}

/// The leaf hash of a tagged value (its tagged canonical bytes).
pub fn leaf_hash_of<T: Tagged>(value: &T) -> Digest {
    leaf_hash(&value.to_canonical_bytes())
}

fn node_hash(left: &Digest, right: &Digest) -> Digest {
    sha256(&[&[0x01], &left.0, &right.0])
}

/// The root over the given leaf hashes.
pub fn root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return sha256(&[]);
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = parent_level(&level);
    }
    level[0]
}

/// The level above: pairs hashed, an odd last node moved up unpaired.
fn parent_level(level: &[Digest]) -> Vec<Digest> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// A proof that a leaf sits at `index` in a tree of `size` leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The leaf's position, from 0.
    pub index: u64,
    /// How many leaves the tree has.
    pub size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<Digest>,
}

crate::canonical_struct!(InclusionProof {
    index,
    size,
    path: seq(MAX_PROOF_LEN),
});
crate::tagged!(
    InclusionProof,
    0x0401,
    "inclusion-proof",
    16 + 4 + 32 * MAX_PROOF_LEN + 3
);

/// The proof for the leaf at `index`, or `None` if there is no such leaf.
pub fn prove(leaves: &[Digest], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        level = parent_level(&level);
        i /= 2;
    }
    Some(InclusionProof {
        index: index as u64,
        size: leaves.len() as u64,
        path,
    })
}

impl InclusionProof {
    /// Whether this proof shows `leaf` (a leaf hash) under `root`. RFC 9162, section 2.1.3.2.
    pub fn verify(&self, leaf: &Digest, root: &Digest) -> bool {
        if self.index >= self.size || self.path.len() > MAX_PROOF_LEN {
            return false;
        }
        let (mut f, mut s) = (self.index, self.size - 1);
        let mut r = *leaf;
        for p in &self.path {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                r = node_hash(p, &r);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        s == 0 && r == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// RFC 9162's recursive definition, as an independent reference for `root`.
    fn reference_root(leaves: &[Digest]) -> Digest {
        match leaves.len() {
            0 => sha256(&[]),
            1 => leaves[0],
            n => {
                // The largest power of two smaller than n.
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn domain_separation() {
        let l = leaves(2);
        assert_ne!(
            root(&l),
            leaf_hash(&[&[0x01][..], &l[0].0, &l[1].0].concat())
        );
        assert_eq!(root(&[]), sha256(&[]));
        assert_eq!(root(&l[..1]), l[0]);
    }

    #[test]
    fn odd_leaf_is_not_duplicated() {
        let l = leaves(3);
        let mut dup = l.clone();
        dup.push(l[2]);
        assert_ne!(root(&l), root(&dup));
    }

    proptest! {
        #[test]
        fn root_matches_rfc_definition(n in 0usize..70) {
            let l = leaves(n);
            prop_assert_eq!(root(&l), reference_root(&l));
        }

        #[test]
        fn every_proof_verifies_and_no_other_leaf_does(n in 1usize..70, pick in any::<prop::sample::Index>()) {
            let l = leaves(n);
            let r = root(&l);
            let i = pick.index(n);
            let proof = prove(&l, i).unwrap();
            prop_assert!(proof.verify(&l[i], &r));
            let other = leaf_hash(b"not a leaf");
            prop_assert!(!proof.verify(&other, &r));
            let mut moved = proof.clone();
            moved.index = (moved.index + 1) % moved.size;
            if n > 1 {
                prop_assert!(!moved.verify(&l[i], &r));
            }
            let bytes = proof.to_canonical_bytes();
            prop_assert_eq!(InclusionProof::from_canonical_bytes(&bytes).unwrap(), proof);
        }
    }
}
