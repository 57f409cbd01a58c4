//! Models as PipeSwitch sees them: an ordered list of layers, each with weight bytes and a
//! forward-pass cost, and the weights themselves in pinned host memory.
//!
//! Layers are laid out back to back, each starting on a [`LAYER_ALIGN`]-byte boundary, in one
//! pinned buffer; the same offsets are used in the device pool, so a group of consecutive layers
//! is one contiguous copy (the aligned *span*, padding included — which keeps copy costs exactly
//! additive for the planner).
//!
//! ```text
//!   pinned host buffer / device pool:  |layer 0|pad|layer 1    |pad|layer 2|pad| ...
//!                                      ^0          ^offset[1]      ^offset[2]
//! ```
//!
//! The two built-in profiles ([`ModelProfile::resnet152_like`], [`ModelProfile::bert_base_like`])
//! derive every layer's parameters and FLOPs from the published architectures (fp32 weights,
//! batch 1: 224×224 images for ResNet-152, 128 tokens for BERT-base) and turn FLOPs into a
//! nominal compute time at a given effective throughput.

use std::sync::Arc;
use std::time::Duration;

use farmem_error::{Error, Result};

use crate::device::{checksum, Device, PinnedBuffer};

/// Alignment of every layer in the host buffer and in the device pool, bytes.
pub const LAYER_ALIGN: u64 = 256;

/// The bytes a layer of `bytes` weights occupies in the host buffer and the pool.
pub fn layer_span(bytes: u64) -> u64 {
    bytes.div_ceil(LAYER_ALIGN) * LAYER_ALIGN
}

/// One layer: its weight bytes and its nominal forward-pass time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerProfile {
    /// A readable name (`"layer3.12.conv2"`).
    pub name: String,
    /// Weight bytes (> 0).
    pub bytes: u64,
    /// Nominal compute time of its forward pass.
    pub compute: Duration,
}

/// A model: its name and layers in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelProfile {
    /// The model's name.
    pub name: String,
    /// Layers in execution order.
    pub layers: Vec<LayerProfile>,
}

fn layer(name: String, params: u64, flops: f64, flops_per_sec: f64) -> LayerProfile {
    LayerProfile {
        name,
        bytes: params * 4,
        compute: Duration::from_nanos((flops / flops_per_sec * 1e9).round() as u64),
    }
}

impl ModelProfile {
    /// Total weight bytes (without alignment padding).
    pub fn weight_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.bytes).sum()
    }

    /// Total nominal compute time.
    pub fn compute(&self) -> Duration {
        self.layers.iter().map(|l| l.compute).sum()
    }

    /// ResNet-152 (He et al. 2016), one layer per convolution (batch norm folded in) plus the
    /// classifier: 156 layers, 60.2 M parameters (241 MB fp32), 11.5 GMAC for one 224×224 image.
    /// Compute time is FLOPs (2 × MAC) over `flops_per_sec`.
    pub fn resnet152_like(flops_per_sec: f64) -> ModelProfile {
        let mut layers = Vec::new();
        // conv1: 7×7, 3→64, stride 2, output 112×112.
        let p = 7 * 7 * 3 * 64;
        layers.push(layer(
            "conv1".into(),
            p,
            2.0 * p as f64 * 112.0 * 112.0,
            flops_per_sec,
        ));
        let stages: [(u64, u64, u64); 4] = [(3, 64, 56), (8, 128, 28), (36, 256, 14), (3, 512, 7)];
        let mut in_ch = 64u64;
        for (si, (blocks, width, hw)) in stages.iter().copied().enumerate() {
            let out_ch = width * 4;
            let pixels = (hw * hw) as f64;
            for b in 0..blocks {
                let convs = [
                    ("conv1", in_ch * width),
                    ("conv2", 9 * width * width),
                    ("conv3", width * out_ch),
                ];
                for (cname, params) in convs {
                    layers.push(layer(
                        format!("layer{}.{b}.{cname}", si + 1),
                        params,
                        2.0 * params as f64 * pixels,
                        flops_per_sec,
                    ));
                }
                if b == 0 {
                    let params = in_ch * out_ch;
                    layers.push(layer(
                        format!("layer{}.0.downsample", si + 1),
                        params,
                        2.0 * params as f64 * pixels,
                        flops_per_sec,
                    ));
                }
                in_ch = out_ch;
            }
        }
        let p = 2048 * 1000 + 1000;
        layers.push(layer("fc".into(), p, 2.0 * p as f64, flops_per_sec));
        ModelProfile {
            name: "resnet152".into(),
            layers,
        }
    }

    /// BERT-base (Devlin et al. 2019) for 128 tokens: the embedding tables, then per encoder
    /// layer its QKV projection, attention output projection (with the attention matmuls' FLOPs),
    /// and the two feed-forward matrices, then the pooler: 50 layers, 109 M parameters (438 MB
    /// fp32). Compute time is FLOPs over `flops_per_sec` (the embedding lookup costs ~nothing).
    pub fn bert_base_like(flops_per_sec: f64) -> ModelProfile {
        let (h, ff, seq, vocab) = (768u64, 3072u64, 128.0f64, 30522u64);
        let mut layers = Vec::new();
        let p = vocab * h + 512 * h + 2 * h + 2 * h;
        layers.push(layer("embeddings".into(), p, seq * h as f64, flops_per_sec));
        for l in 0..12 {
            let qkv = h * 3 * h + 3 * h;
            layers.push(layer(
                format!("encoder.{l}.qkv"),
                qkv,
                2.0 * qkv as f64 * seq,
                flops_per_sec,
            ));
            let out = h * h + h + 2 * h;
            let attention = 2.0 * 2.0 * seq * seq * h as f64;
            layers.push(layer(
                format!("encoder.{l}.attn_out"),
                out,
                2.0 * out as f64 * seq + attention,
                flops_per_sec,
            ));
            let ff1 = h * ff + ff;
            layers.push(layer(
                format!("encoder.{l}.ffn1"),
                ff1,
                2.0 * ff1 as f64 * seq,
                flops_per_sec,
            ));
            let ff2 = ff * h + h + 2 * h;
            layers.push(layer(
                format!("encoder.{l}.ffn2"),
                ff2,
                2.0 * ff2 as f64 * seq,
                flops_per_sec,
            ));
        }
        let p = h * h + h;
        layers.push(layer("pooler".into(), p, 2.0 * p as f64, flops_per_sec));
        ModelProfile {
            name: "bert-base".into(),
            layers,
        }
    }

    /// A synthetic model of `n` layers with the given bytes and compute per layer (tests, demos).
    pub fn uniform(name: &str, n: usize, bytes: u64, compute: Duration) -> ModelProfile {
        ModelProfile {
            name: name.into(),
            layers: (0..n)
                .map(|i| LayerProfile {
                    name: format!("{name}.{i}"),
                    bytes,
                    compute,
                })
                .collect(),
        }
    }
}

/// A model whose weights sit in pinned host memory, ready to be switched in.
pub struct HostModel {
    device: Arc<dyn Device>,
    profile: ModelProfile,
    weights: Option<PinnedBuffer>,
    offsets: Vec<u64>,
    spans: Vec<u64>,
    checksum: u64,
}

impl HostModel {
    /// Lays `profile` out in pinned memory of `device` and fills every layer with bytes derived
    /// from `seed` (so a switch's checksums can be verified).
    pub fn new(device: Arc<dyn Device>, profile: ModelProfile, seed: u64) -> Result<HostModel> {
        if profile.layers.is_empty() {
            return Err(Error::invalid(format!(
                "model {}: no layers; a model needs at least one",
                profile.name
            )));
        }
        let mut offsets = Vec::with_capacity(profile.layers.len());
        let mut spans = Vec::with_capacity(profile.layers.len());
        let mut at = 0u64;
        for l in &profile.layers {
            if l.bytes == 0 {
                return Err(Error::invalid(format!(
                    "model {}: layer {} has 0 weight bytes; give every layer weights",
                    profile.name, l.name
                )));
            }
            let span = layer_span(l.bytes);
            offsets.push(at);
            spans.push(span);
            at += span;
        }
        let weights = device.alloc_pinned(at)?;
        let mut checksum_total = 0u64;
        let mut rng = seed | 1;
        let mut chunk = Vec::new();
        for (i, l) in profile.layers.iter().enumerate() {
            let mut written = 0u64;
            while written < l.bytes {
                let n = (l.bytes - written).min(1 << 20) as usize;
                chunk.clear();
                while chunk.len() < n {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    chunk.extend_from_slice(&rng.to_le_bytes());
                }
                chunk.truncate(n);
                device.write_pinned(&weights, offsets[i] + written, &chunk)?;
                // Layers start 4-aligned and chunks are 1 MiB, so summing chunk by chunk equals
                // the checksum of the whole layer.
                checksum_total = checksum_total.wrapping_add(checksum(&chunk));
                written += n as u64;
            }
        }
        Ok(HostModel {
            device,
            profile,
            weights: Some(weights),
            offsets,
            spans,
            checksum: checksum_total,
        })
    }

    /// The model's profile.
    pub fn profile(&self) -> &ModelProfile {
        &self.profile
    }

    /// Offset of each layer in the host buffer and in the device pool.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    /// Aligned span of each layer (what a copy moves).
    pub fn spans(&self) -> &[u64] {
        &self.spans
    }

    /// Bytes the model occupies in the pool (all spans).
    pub fn pool_bytes(&self) -> u64 {
        self.spans.iter().sum()
    }

    /// The sum of all layers' [`checksum`]s: what one forward pass adds to a worker's slot.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// The pinned buffer holding the weights.
    pub(crate) fn weights(&self) -> Result<&PinnedBuffer> {
        self.weights
            .as_ref()
            .ok_or_else(|| Error::internal("host model used after its weights were freed"))
    }

    /// The device the weights are pinned for.
    pub(crate) fn device(&self) -> &Arc<dyn Device> {
        &self.device
    }
}

impl Drop for HostModel {
    fn drop(&mut self) {
        if let Some(w) = self.weights.take() {
            let _ = self.device.free_pinned(w);
        }
    }
}
