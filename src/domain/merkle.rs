//! The audit log's Merkle tree, as RFC 6962 (and RFC 9162) define it: leaves hashed with a
//! `0x00` prefix, interior nodes with `0x01`, and a tree of `n` leaves split at the largest
//! power of two below `n`. Pure functions over leaf hashes.
//!
//! - [`Frontier`]: the tree's right edge (one hash per set bit of its size). Appending a leaf
//!   and computing the root are O(log n), and the frontier is all a sealer has to keep.
//! - [`inclusion_proof`] and [`consistency_proof`] build the RFC's proofs from leaf hashes.
//! - [`verify_inclusion`] and [`verify_consistency`] check them with the `ct-merkle` crate,
//!   so what an auditor relies on is not the code that produced the proofs.

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::{digest::generic_array::GenericArray, Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: SHA-256(0x00 || value).
pub fn leaf_hash(value: &[u8]) -> Hash {
    Sha256::new_with_prefix([0u8])
        .chain_update(value)
        .finalize()
        .into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let hasher = Sha256::new_with_prefix([1u8]).chain_update(left);
    hasher.chain_update(right).finalize().into()
}

/// The root of the tree of these leaves (the empty tree's is SHA-256 of nothing).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The right edge of a tree: the roots of its perfect subtrees, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// A frontier as stored; `None` when the hashes cannot be a tree of `size` leaves.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (size.count_ones() as usize == hashes.len()).then_some(Self { size, hashes })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored form: one hash per set bit of the size.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf: perfect subtrees of equal height merge, as a binary counter carries.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.hashes.pop().expect("one hash per set bit");
            carry = node_hash(&left, &carry);
            size >>= 1;
        }
        self.hashes.push(carry);
        self.size += 1;
    }

    /// The root: the subtrees folded from the right.
    pub fn root(&self) -> Hash {
        let mut hashes = self.hashes.iter().rev();
        let Some(first) = hashes.next() else {
            return root(&[]);
        };
        hashes.fold(*first, |right, left| node_hash(left, &right))
    }
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 §2.1.1), leaf to root.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    let (mut path, sibling) = match index < k {
        true => (inclusion_proof(&leaves[..k], index), root(&leaves[k..])),
        false => (inclusion_proof(&leaves[k..], index - k), root(&leaves[..k])),
    };
    path.push(sibling);
    path
}

/// The proof that the tree of the first `old_size` leaves is a prefix of the tree of all
/// `leaves` (RFC 6962 §2.1.2). Empty when the sizes are equal or `old_size` is 0.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Vec<Hash> {
    match old_size {
        0 => Vec::new(),
        m if m >= leaves.len() => Vec::new(),
        m => subproof(leaves, m, true),
    }
}

fn subproof(leaves: &[Hash], m: usize, complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    let (mut proof, other) = match m <= k {
        true => (subproof(&leaves[..k], m, complete), root(&leaves[k..])),
        false => (subproof(&leaves[k..], m - k, false), root(&leaves[..k])),
    };
    proof.push(other);
    proof
}

/// Whether `path` proves that the leaf whose value is `value` sits at `index` of the tree of
/// `size` leaves with this `root`.
pub fn verify_inclusion(root: &Hash, size: u64, index: u64, value: &[u8], path: &[Hash]) -> bool {
    let root = RootHash::<Sha256>::new(GenericArray::clone_from_slice(root), size);
    let proof =
        InclusionProof::<Sha256>::from_digests(path.iter().map(|h| GenericArray::from_slice(h)));
    root.verify_inclusion(&value, index, &proof).is_ok()
}

/// Whether `proof` shows the tree (`old_size`, `old_root`) is a prefix of (`size`, `root`).
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    size: u64,
    root: &Hash,
    proof: &[Hash],
) -> bool {
    match (old_size, old_size == size) {
        (0, _) => proof.is_empty(),
        (_, true) => proof.is_empty() && old_root == root,
        _ => {
            let old = RootHash::<Sha256>::new(GenericArray::clone_from_slice(old_root), old_size);
            let new = RootHash::<Sha256>::new(GenericArray::clone_from_slice(root), size);
            let digests = proof.iter().map(|h| GenericArray::from_slice(h));
            let proof = ConsistencyProof::<Sha256>::from_digests(digests);
            new.verify_consistency(&old, &proof).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The leaves of the Certificate Transparency test vectors (RFC 6962's reference tests).
    fn vector_leaves() -> Vec<Hash> {
        let values: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        values.iter().map(|v| leaf_hash(v)).collect()
    }

    #[test]
    fn the_certificate_transparency_vectors_give_their_roots() {
        let leaves = vector_leaves();
        assert_eq!(
            hex(&root(&leaves[..1])),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex(&root(&leaves)),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            hex(&root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn the_frontier_keeps_the_root_as_leaves_are_added_and_restores_from_its_parts() {
        let all = leaves(70);
        let mut f = Frontier::default();
        for (i, leaf) in all.iter().enumerate() {
            assert_eq!(f.root(), root(&all[..i]), "size {i}");
            f.push(*leaf);
        }
        assert_eq!(f.root(), root(&all));
        let again = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
        assert_eq!(again, f);
        assert!(Frontier::from_parts(3, vec![[0; 32]]).is_none());
    }

    proptest! {
        #[test]
        fn every_inclusion_proof_verifies_and_a_wrong_leaf_does_not(n in 1usize..80, seed in any::<usize>()) {
            let all = leaves(n);
            let i = seed % n;
            let path = inclusion_proof(&all, i);
            let value = format!("leaf {i}");
            prop_assert!(verify_inclusion(&root(&all), n as u64, i as u64, value.as_bytes(), &path));
            prop_assert!(!verify_inclusion(&root(&all), n as u64, i as u64, b"forged", &path));
        }

        #[test]
        fn every_consistency_proof_verifies_and_a_rewritten_prefix_does_not(n in 2usize..80, seed in any::<usize>()) {
            let all = leaves(n);
            let m = 1 + seed % (n - 1);
            let proof = consistency_proof(&all, m);
            prop_assert!(verify_consistency(m as u64, &root(&all[..m]), n as u64, &root(&all), &proof));
            let mut rewritten = all.clone();
            rewritten[0] = leaf_hash(b"rewritten");
            let proof = consistency_proof(&rewritten, m);
            prop_assert!(!verify_consistency(m as u64, &root(&all[..m]), n as u64, &root(&rewritten), &proof));
        }
    }
}
