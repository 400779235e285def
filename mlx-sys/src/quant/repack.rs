//! The column-interleaved layout the few-row kernels of [`super::ileave`] read, made once at
//! load from the file's ggml blocks, and its exact inverse.
//!
//! Sixteen output rows (columns of the product) form a group; a group's blocks are stored
//! together so that one 64-byte load holds four consecutive elements of each of the sixteen
//! columns, i.e. one 32-bit lane per column. `vpdpbusd` with four activation bytes broadcast to
//! every lane then accumulates sixteen columns' dot products in sixteen lanes: no horizontal
//! sums, and the float scales, minimums and their conversion are done once per block for
//! sixteen columns and every activation row, instead of once per column and row. (The idea is
//! the one of llama.cpp's CPU "repack" GEMMs; the layout here is our own.)
//!
//! Per group and base block (`GB` bytes, 16 × the file's block size except Q4_K's 148 for 144),
//! with "chunk" a 64-byte array whose byte `4c + t` belongs to column `c`:
//! - Q4_0: 16 f16 `d` | 4 nibble chunks.   Q4_1: `d` | 16 f16 `m` | 4 nibble chunks.
//! - Q5_0: `d` | 8 u64 fifth-bit masks (bit `4c + t` of mask `g` = element `4g + t`) | nibbles.
//! - Q8_0: `d` | 8 chunks of `q ^ 0x80` (unsigned, so `vpdpbusd` takes them as they are).
//! - Q4_K: `d` | `dmin` | 8×16 u8 scales | 8×16 u8 minimums | 8 sub-blocks of nibble chunks.
//! - Q6_K: `d` | 16×16 i8 scales (one per 16 elements) | 8 sub-blocks of nibble chunks (low four
//!   bits) | 8 sub-blocks of 2 chunks of high bits (bits `2i` of chunk `h` = group `4h + i`).
//!
//! A 32-element run's nibble chunk `j` (0..4) holds group `j` (elements `4j..4j+4`) in its low
//! nibbles and group `j + 4` in its high nibbles. Bytes 0..32 of a chunk are columns 0..8, so
//! the AVX2 kernel reads each half on its own.

use super::{block_bytes, block_elems, Q4_0, Q4_1, Q4_K, Q5_0, Q6_K, Q8_0};

/// Marks a ggml type id as stored in this layout (ggml's ids are below 64).
pub const REPACKED: u32 = 0x100;
/// Output rows per group.
pub const GROUP: usize = 16;

/// A weight as the kernels will read it: `ggml_type` is what `qmm_kernel` is called with and
/// `bytes` holds `rows` rows of `bytes.len() / rows` bytes (a group's 16 rows are its bytes).
pub struct Repacked {
    pub ggml_type: u32,
    pub bytes: Vec<u8>,
}

/// The ggml type behind a possibly repacked id.
pub fn base_type(ggml_type: u32) -> u32 {
    ggml_type & !REPACKED
}

pub fn is_repacked(ggml_type: u32) -> bool {
    ggml_type & REPACKED != 0
}

/// Bytes per group and base block.
pub(super) fn group_block_bytes(base: u32) -> Option<usize> {
    match base {
        Q4_K => Some(GROUP * 148),
        _ => block_bytes(base).map(|b| GROUP * b),
    }
}

/// `rows × cols` weights in ggml blocks, interleaved for the few-row integer kernels where this
/// CPU has them and `rows` is a multiple of 16; otherwise the blocks unchanged. Resident size:
/// the same bytes, except Q4_K's 2.8% more (its packed 6-bit scales become bytes).
///
/// Repacked rows can be multiplied, not gathered (embeddings keep the file layout).
pub fn repack(ggml_type: u32, bytes: Vec<u8>, rows: usize, cols: usize) -> Repacked {
    let plain = |bytes| Repacked { ggml_type, bytes };
    if !interleave_wanted() || !super::supported(ggml_type, cols) || rows % GROUP != 0 {
        return plain(bytes);
    }
    let (Some(bb), Some(gb)) = (block_bytes(ggml_type), group_block_bytes(ggml_type)) else {
        return plain(bytes);
    };
    let blocks = cols / block_elems(ggml_type);
    if bytes.len() != rows * blocks * bb {
        return plain(bytes);
    }
    let mut out = vec![0u8; rows / GROUP * blocks * gb];
    for (g, dst) in out.chunks_exact_mut(blocks * gb).enumerate() {
        let src = &bytes[g * GROUP * blocks * bb..(g + 1) * GROUP * blocks * bb];
        for b in 0..blocks {
            let parts: [Parts; GROUP] = std::array::from_fn(|c| {
                let at = (c * blocks + b) * bb;
                split(ggml_type, &src[at..at + bb])
            });
            write_group(ggml_type, &parts, &mut dst[b * gb..(b + 1) * gb]);
        }
    }
    Repacked {
        ggml_type: ggml_type | REPACKED,
        bytes: out,
    }
}

/// Whether [`repack`] interleaves: with the integer kernels (x86 with AVX2) unless
/// `MLX_SERVE_QUANT_REPACK=0`, for comparisons.
fn interleave_wanted() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::idot::int_isa().is_some()
            && std::env::var("MLX_SERVE_QUANT_REPACK").as_deref() != Ok("0")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One group (16 rows) of repacked blocks, `blocks` per row, back to the file's blocks.
pub(super) fn unrepack_group(base: u32, src: &[u8], blocks: usize, dst: &mut [u8]) {
    let (Some(bb), Some(gb)) = (block_bytes(base), group_block_bytes(base)) else {
        return;
    };
    for b in 0..blocks {
        let parts = read_group(base, &src[b * gb..(b + 1) * gb]);
        for (c, p) in parts.iter().enumerate() {
            let at = (c * blocks + b) * bb;
            join(base, p, &mut dst[at..at + bb]);
        }
    }
}

/// Row `col` (0..16) of one group of repacked blocks, `blocks` per row, as the file's blocks.
pub(super) fn unrepack_row(base: u32, src: &[u8], blocks: usize, col: usize, dst: &mut [u8]) {
    let (Some(bb), Some(gb)) = (block_bytes(base), group_block_bytes(base)) else {
        return;
    };
    for b in 0..blocks {
        let parts = read_group(base, &src[b * gb..(b + 1) * gb]);
        join(base, &parts[col], &mut dst[b * bb..(b + 1) * bb]);
    }
}

/// One column's block as integers: `q` the unsigned quants in element order (Q8_0: the raw
/// signed bytes), `sc` Q4_K's scales then minimums or Q6_K's 16 scales.
#[derive(Clone, Copy)]
struct Parts {
    d: [u8; 2],
    m: [u8; 2],
    q: [u8; 256],
    sc: [u8; 16],
}

fn split(t: u32, s: &[u8]) -> Parts {
    let mut p = Parts {
        d: [s[0], s[1]],
        m: [0; 2],
        q: [0; 256],
        sc: [0; 16],
    };
    match t {
        Q4_0 | Q4_1 | Q5_0 => {
            let (qs, qh) = match t {
                Q4_0 => (&s[2..18], 0),
                Q4_1 => (&s[4..20], 0),
                _ => (&s[6..22], u32::from_le_bytes([s[2], s[3], s[4], s[5]])),
            };
            if t == Q4_1 {
                p.m = [s[2], s[3]];
            }
            for j in 0..16 {
                p.q[j] = (qs[j] & 15) | (((qh >> j) & 1) << 4) as u8;
                p.q[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
            }
        }
        Q8_0 => p.q[..32].copy_from_slice(&s[2..34]),
        Q4_K => {
            p.m = [s[2], s[3]];
            for j in 0..8 {
                let (sc, m) = super::kquants::scale_min(j, &s[4..16]);
                p.sc[j] = sc;
                p.sc[8 + j] = m;
            }
            for e in 0..256 {
                let byte = s[16 + 32 * (e / 64) + e % 32];
                p.q[e] = (byte >> (4 * ((e % 64) / 32))) & 15;
            }
        }
        Q6_K => {
            p.d = [s[208], s[209]];
            p.sc.copy_from_slice(&s[192..208]);
            for e in 0..256 {
                let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                let lo = (s[64 * n + l + 32 * (j % 2)] >> (4 * (j / 2))) & 15;
                let hi = (s[128 + 32 * n + l] >> (2 * j)) & 3;
                p.q[e] = lo | (hi << 4);
            }
        }
        _ => {}
    }
    p
}

fn join(t: u32, p: &Parts, s: &mut [u8]) {
    s[..2].copy_from_slice(&p.d);
    match t {
        Q4_0 | Q4_1 | Q5_0 => {
            let at = match t {
                Q4_0 => 2,
                Q4_1 => 4,
                _ => 6,
            };
            let mut qh = 0u32;
            for j in 0..16 {
                s[at + j] = (p.q[j] & 15) | ((p.q[j + 16] & 15) << 4);
                qh |= (((p.q[j] >> 4) & 1) as u32) << j
                    | (((p.q[j + 16] >> 4) & 1) as u32) << (j + 16);
            }
            if t == Q4_1 {
                s[2..4].copy_from_slice(&p.m);
            } else if t == Q5_0 {
                s[2..6].copy_from_slice(&qh.to_le_bytes());
            }
        }
        Q8_0 => s[2..34].copy_from_slice(&p.q[..32]),
        Q4_K => {
            s[2..4].copy_from_slice(&p.m);
            let (sc, m) = (&p.sc[..8], &p.sc[8..]);
            for j in 0..4 {
                s[4 + j] = sc[j] | ((sc[j + 4] >> 4) << 6);
                s[8 + j] = m[j] | ((m[j + 4] >> 4) << 6);
                s[12 + j] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
            }
            s[16..144].fill(0);
            for e in 0..256 {
                s[16 + 32 * (e / 64) + e % 32] |= p.q[e] << (4 * ((e % 64) / 32));
            }
        }
        Q6_K => {
            s[..208].fill(0);
            s[208..210].copy_from_slice(&p.d);
            s[192..208].copy_from_slice(&p.sc);
            for e in 0..256 {
                let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                s[64 * n + l + 32 * (j % 2)] |= (p.q[e] & 15) << (4 * (j / 2));
                s[128 + 32 * n + l] |= (p.q[e] >> 4) << (2 * j);
            }
        }
        _ => {}
    }
}

/// Byte `4c + t` of the nibble chunk `j` of the 32-element run starting at `e0`.
fn nibble_byte(parts: &[Parts; GROUP], e0: usize, j: usize, c: usize, t: usize) -> u8 {
    let q = &parts[c].q;
    (q[e0 + 4 * j + t] & 15) | ((q[e0 + 16 + 4 * j + t] & 15) << 4)
}

fn write_group(t: u32, parts: &[Parts; GROUP], o: &mut [u8]) {
    for (c, p) in parts.iter().enumerate() {
        o[2 * c..2 * c + 2].copy_from_slice(&p.d);
    }
    let runs = block_elems(t) / 32;
    let mut at = 32;
    if t == Q4_1 || t == Q4_K {
        for (c, p) in parts.iter().enumerate() {
            o[at + 2 * c..at + 2 * c + 2].copy_from_slice(&p.m);
        }
        at += 32;
    }
    match t {
        Q5_0 => {
            for g in 0..8 {
                let mut mask = 0u64;
                for c in 0..GROUP {
                    for e in 0..4 {
                        mask |= (((parts[c].q[4 * g + e] >> 4) & 1) as u64) << (4 * c + e);
                    }
                }
                o[at + 8 * g..at + 8 * g + 8].copy_from_slice(&mask.to_le_bytes());
            }
            at += 64;
        }
        Q4_K => {
            for s in 0..16 {
                for c in 0..GROUP {
                    o[at + 16 * s + c] = parts[c].sc[s];
                }
            }
            at += 256;
        }
        Q6_K => {
            for s in 0..16 {
                for c in 0..GROUP {
                    o[at + 16 * s + c] = parts[c].sc[s];
                }
            }
            at += 256;
        }
        _ => {}
    }
    if t == Q8_0 {
        for g in 0..8 {
            for c in 0..GROUP {
                for e in 0..4 {
                    o[at + 64 * g + 4 * c + e] = parts[c].q[4 * g + e] ^ 0x80;
                }
            }
        }
        return;
    }
    for r in 0..runs {
        for j in 0..4 {
            for c in 0..GROUP {
                for e in 0..4 {
                    o[at + 64 * j + 4 * c + e] = nibble_byte(parts, 32 * r, j, c, e);
                }
            }
        }
        at += 256;
    }
    if t == Q6_K {
        for r in 0..runs {
            for h in 0..2 {
                for c in 0..GROUP {
                    for e in 0..4 {
                        let mut v = 0u8;
                        for i in 0..4 {
                            v |= (parts[c].q[32 * r + 4 * (4 * h + i) + e] >> 4) << (2 * i);
                        }
                        o[at + 64 * h + 4 * c + e] = v;
                    }
                }
            }
            at += 128;
        }
    }
}

fn read_group(t: u32, o: &[u8]) -> [Parts; GROUP] {
    let mut parts = [Parts {
        d: [0; 2],
        m: [0; 2],
        q: [0; 256],
        sc: [0; 16],
    }; GROUP];
    for (c, p) in parts.iter_mut().enumerate() {
        p.d = [o[2 * c], o[2 * c + 1]];
    }
    let runs = block_elems(t) / 32;
    let mut at = 32;
    if t == Q4_1 || t == Q4_K {
        for (c, p) in parts.iter_mut().enumerate() {
            p.m = [o[at + 2 * c], o[at + 2 * c + 1]];
        }
        at += 32;
    }
    let mut fifth = [0u64; 8];
    match t {
        Q5_0 => {
            for (g, f) in fifth.iter_mut().enumerate() {
                *f = u64::from_le_bytes(o[at + 8 * g..at + 8 * g + 8].try_into().unwrap());
            }
            at += 64;
        }
        Q4_K | Q6_K => {
            for s in 0..16 {
                for (c, p) in parts.iter_mut().enumerate() {
                    p.sc[s] = o[at + 16 * s + c];
                }
            }
            at += 256;
        }
        _ => {}
    }
    if t == Q8_0 {
        for g in 0..8 {
            for (c, p) in parts.iter_mut().enumerate() {
                for e in 0..4 {
                    p.q[4 * g + e] = o[at + 64 * g + 4 * c + e] ^ 0x80;
                }
            }
        }
        return parts;
    }
    for r in 0..runs {
        for j in 0..4 {
            for (c, p) in parts.iter_mut().enumerate() {
                for e in 0..4 {
                    let v = o[at + 64 * j + 4 * c + e];
                    p.q[32 * r + 4 * j + e] = v & 15;
                    p.q[32 * r + 16 + 4 * j + e] = v >> 4;
                }
            }
        }
        at += 256;
    }
    if t == Q5_0 {
        for (g, f) in fifth.iter().enumerate() {
            for (c, p) in parts.iter_mut().enumerate() {
                for e in 0..4 {
                    p.q[4 * g + e] |= (((f >> (4 * c + e)) & 1) as u8) << 4;
                }
            }
        }
    }
    if t == Q6_K {
        for r in 0..runs {
            for h in 0..2 {
                for (c, p) in parts.iter_mut().enumerate() {
                    for e in 0..4 {
                        let v = o[at + 64 * h + 4 * c + e];
                        for i in 0..4 {
                            p.q[32 * r + 4 * (4 * h + i) + e] |= ((v >> (2 * i)) & 3) << 4;
                        }
                    }
                }
            }
            at += 128;
        }
    }
    parts
}
