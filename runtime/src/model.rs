//! A loaded model: the tokenizer, the planned graph, and the buffers every request reuses.

use std::path::Path;
use tokenizers::Tokenizer;
use tract_core::internal::*;
use tract_linalg::multithread::Executor;

use crate::error::{Error, Result};
use crate::format::{Manifest, ModelFile, OutputKind, SectionKind};
use crate::graph::GraphReader;
use crate::predictions::{top_k_softmax, FillMask, MaskPrediction, MAX_MASKS, MAX_TOP_K};
use crate::text::{clean_up_tokenization, substitute_mask, GENERIC_MASK};

/// A model file loaded and planned, ready to answer fill-mask requests.
///
/// Loading validates every checksum, parses the tokenizer, and plans the graph once. Each request
/// reuses the buffers planned at load; results land in fixed-capacity [`FillMask`] values.
///
/// ```no_run
/// # fn main() -> Result<(), bertling::Error> {
/// let mut model = bertling::Model::load("bert.bertling")?;
/// let answer = model.fill_mask("The capital of France is [MASK].", 5)?;
/// for c in &answer.masks[0].candidates {
///     println!("{:>8.4}  {}", c.score, model.token_str(c.token));
/// }
/// # Ok(()) }
/// ```
pub struct Model {
    manifest: Manifest,
    tokenizer: Tokenizer,
    state: TypedSimpleState,
    /// The masked-LM head, when the vocabulary projection is cut to the mask positions.
    head: Option<TypedSimpleState>,
    /// [`OutputKind::MaskedHead`]: the head's input shape, the mask count going at the
    /// second-to-last axis. Empty otherwise.
    head_input_shape: Vec<usize>,
    /// The mask positions of the last request, text order (capacity planned at load).
    positions: Vec<i64>,
    /// Hidden-state rows of the masks (capacity planned at load).
    hidden: Vec<f32>,
    token_strs: Vec<String>,
    /// The text after mask substitution (reused).
    text_buf: String,
    /// Token ids of the last request (capacity `max_tokens`).
    ids: Vec<u32>,
    /// Type ids of the last request.
    type_ids: Vec<u32>,
    /// Mask-position logits of the last request, `masks x vocab` (capacity planned at load).
    logits: Vec<f32>,
    /// Per-node times of the request being profiled ([`Model::profile`]); `None` otherwise.
    profiler: Option<Vec<crate::profile::NodeTime>>,
    /// The vocabulary as completion sees it (word starts, continuations, their spelling).
    lexicon: crate::complete::Lexicon,
    /// The thread pool of [`LoadOptions::threads`] > 1, which requests run on.
    executor: Option<Executor>,
    /// The helper threads bertling's own operators split their work with (`crate::threads`).
    team: Option<Arc<crate::threads::Team>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Threads one request may use (its products, attention and norms are split across them).
    /// 0 or 1 runs everything on the calling thread. More than the cores free for it gains
    /// nothing, but costs little: the helper threads take parts of the work only while the OS
    /// runs them, and the calling thread does what they have not taken.
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { threads: 1 }
    }
}

/// Gives back to the kernel the whole pages of `map` from the one `bytes` starts in to the last
/// one it fills (the caller has read `bytes`): a read-only mapping refaults a page from the file
/// if it is read again.
fn release_pages(map: &memmap2::Mmap, bytes: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let start = bytes.as_ptr() as usize - map.as_ptr() as usize;
        // Whole pages, up to the last one the slice fills (the next tensor's first page stays). A
        // page shared with bytes not read yet costs a refault when they are.
        let end = (start + bytes.len()) / page * page;
        let start = start / page * page;
        if end > start {
            // SAFETY: the range lies in the mapping, which is read-only: MADV_DONTNEED drops its
            // pages from this process and a later read refaults them from the file unchanged.
            // Failure only leaves the pages resident.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
    #[cfg(not(unix))]
    let _ = (map, bytes);
}

fn graph_err(e: impl std::fmt::Display) -> Error {
    Error::Graph(format!("{e:#}"))
}

impl Model {
    /// Loads a model file from disk (memory-mapped while it is read, each stored tensor's pages
    /// given back once it is copied; nothing stays mapped), with
    /// the default [`LoadOptions`] (one thread).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &LoadOptions::default())
    }

    /// Loads a model file from disk with the given options.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only and dropped before returning; every byte read from it is
        // checksummed first. A concurrent writer could only make the checksums fail.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        // Each stored tensor's pages go back to the kernel once copied: the file is not resident
        // beside its copy (DistilBERT-base int8: 58 MB less at the peak of a load).
        let release = |bytes: &[u8]| release_pages(&map, bytes);
        Model::guarded(|| Model::from_bytes_unguarded(&map, options, Some(&release)))
    }

    /// Loads a model from a file image in memory, with the default [`LoadOptions`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Model::from_bytes_with(bytes, &LoadOptions::default())
    }

    /// Loads a model from a file image in memory with the given options.
    ///
    /// Every checksum is verified first, so a corrupted file is an error. A file whose checksums
    /// hold but whose graph tract cannot handle (a crafted file) is an error too: a panic inside
    /// tract or the tokenizer is caught and reported, where the build unwinds on panic (the
    /// default; the device profile aborts instead).
    pub fn from_bytes_with(bytes: &[u8], options: &LoadOptions) -> Result<Model> {
        Model::guarded(|| Model::from_bytes_unguarded(bytes, options, None))
    }

    /// Runs a load, turning a panic inside tract or the tokenizer into an error.
    fn guarded(load: impl FnOnce() -> Result<Model>) -> Result<Model> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)) {
            Ok(r) => r,
            Err(_) => Err(Error::Inconsistent(
                "the model's graph or tokenizer made a library fail (internal panic)".into(),
            )),
        }
    }

    fn from_bytes_unguarded(
        bytes: &[u8],
        options: &LoadOptions,
        release: Option<&crate::graph::Release<'_>>,
    ) -> Result<Model> {
        let file = ModelFile::parse(bytes)?;
        let manifest = file.manifest.clone();
        let section = |kind| {
            file.section(kind)
                .ok_or_else(|| Error::Inconsistent(format!("the {kind:?} section is missing")))
        };

        let mut tokenizer = Tokenizer::from_bytes(section(SectionKind::Tokenizer)?)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        check_tokenizer(&manifest, &tokenizer)?;

        let executor = (options.threads > 1).then(|| Executor::multithread(options.threads));
        let team = match options.threads {
            0 | 1 => None,
            threads => Some(Arc::new(
                crate::threads::Team::new(threads)
                    .map_err(|source| Error::Threads { threads, source })?,
            )),
        };
        let run_options = RunOptions {
            executor: executor.clone(),
            ..RunOptions::default()
        };
        let mut reader = GraphReader::new(section(SectionKind::Tensors)?, &manifest.tensors);
        if let Some(release) = release {
            reader = reader.with_release(release);
        }
        let mut constants = crate::shared_constants::ConstantPool::default();
        let mut plan = |kind| -> Result<(TypedModel, TypedSimpleState)> {
            let graph = reader.read_graph(section(kind)?).map_err(graph_err)?;
            check_format_version(&graph, file.version)?;
            // The load-time rewrites match what tract's decluttering makes of the graph; then the
            // chains they replaced are dropped and tract optimizes the rest.
            let mut optimized = graph.clone().into_decluttered().map_err(graph_err)?;
            crate::gelu::use_vectorized_tanh(&mut optimized).map_err(graph_err)?;
            crate::int8::fold::fold_biases(&mut optimized).map_err(graph_err)?;
            crate::int8::fold::fold_output_scales(&mut optimized).map_err(graph_err)?;
            crate::norm::fuse_layer_norms(&mut optimized).map_err(graph_err)?;
            crate::attention::fuse_attention(&mut optimized).map_err(graph_err)?;
            let mut optimized = optimized.into_compact().map_err(graph_err)?;
            optimized.optimize().map_err(graph_err)?;
            constants.share(&mut optimized).map_err(graph_err)?;
            let plan =
                TypedSimplePlan::new_with_options(optimized, &run_options).map_err(graph_err)?;
            Ok((graph, plan.spawn().map_err(graph_err)?))
        };
        let (graph, state) = plan(SectionKind::Graph)?;
        if graph.inputs.len() != manifest.inputs.len() || graph.outputs.len() != 1 {
            return Err(Error::Inconsistent(format!(
                "the graph has {} inputs and {} outputs; the manifest lists {} inputs and one output",
                graph.inputs.len(),
                graph.outputs.len(),
                manifest.inputs.len()
            )));
        }
        let (head, head_input_shape, hidden) = match manifest.output {
            OutputKind::AllPositionLogits => (None, vec![], 0),
            OutputKind::MaskedHead { hidden } => {
                let (graph, state) = plan(SectionKind::Head)?;
                let shape = head_input_shape(&graph, hidden as usize)?;
                (Some(state), shape, hidden as usize)
            }
            OutputKind::MaskedLayer { hidden } => {
                let (graph, state) = plan(SectionKind::Head)?;
                check_layer_head(&graph, hidden as usize)?;
                (Some(state), vec![], hidden as usize)
            }
        };

        let vocab = tokenizer.get_vocab_size(true) as u32;
        let token_strs = (0..vocab)
            .map(|id| {
                let s = tokenizer.decode(&[id], false).unwrap_or_default();
                if manifest.clean_up_tokenization_spaces {
                    clean_up_tokenization(&s)
                } else {
                    s
                }
            })
            .collect();
        let max_tokens = manifest.max_tokens as usize;
        let lexicon = crate::complete::Lexicon::new(&tokenizer);
        Ok(Model {
            lexicon,
            profiler: None,
            text_buf: String::with_capacity(256),
            ids: Vec::with_capacity(max_tokens),
            type_ids: Vec::with_capacity(max_tokens),
            logits: Vec::with_capacity(MAX_MASKS * manifest.vocab_size as usize),
            hidden: Vec::with_capacity(MAX_MASKS * hidden),
            head,
            head_input_shape,
            positions: Vec::with_capacity(MAX_MASKS),
            executor,
            team,
            manifest,
            tokenizer,
            state,
            token_strs,
        })
    }

    /// The memory this model holds and plans to use for a request of `tokens` tokens (capped at
    /// the model's maximum) with `masks` masks (1 to [`MAX_MASKS`]; the most is the worst case):
    /// see [`crate::footprint`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), bertling::Error> {
    /// let model = bertling::Model::load("model.bertling")?;
    /// let longest = model.manifest().max_tokens as usize;
    /// let f = model.footprint(longest, bertling::MAX_MASKS)?;
    /// println!("planned peak {:.1} MB", f.total() as f64 / 1e6);
    /// # Ok(()) }
    /// ```
    pub fn footprint(&self, tokens: usize, masks: usize) -> Result<crate::footprint::Footprint> {
        use crate::footprint::{count_weights, plan_memory};
        let tokens = tokens.clamp(1, self.manifest.max_tokens as usize);
        let masks = masks.clamp(1, MAX_MASKS);
        let crate::format::SequencePlan::Symbolic { symbol } = &self.manifest.sequence;
        let mut seen = std::collections::HashSet::new();
        let (mut weights, mut activations, mut scratch) = (0u64, 0u64, 0u64);
        for state in std::iter::once(&self.state).chain(self.head.as_ref()) {
            let plan = state.plan();
            let model = plan.model();
            let mut values = SymbolValues::default();
            for sym in model.symbols.all_symbols() {
                let v = if sym.to_string() == *symbol {
                    tokens
                } else {
                    masks
                };
                values.set(&sym, v as i64);
            }
            count_weights(model, &mut seen, &mut weights).map_err(graph_err)?;
            let m = plan_memory(model, plan.order_without_consts(), &values).map_err(graph_err)?;
            activations = activations.max(m.activations);
            scratch = scratch.max(m.scratch);
        }
        let buffers = (self.ids.capacity() + self.type_ids.capacity()) * 4
            + self.positions.capacity() * 8
            + (self.hidden.capacity() + self.logits.capacity()) * 4;
        Ok(crate::footprint::Footprint {
            tokens,
            masks,
            weights,
            activations,
            scratch,
            buffers: buffers as u64,
        })
    }

    /// Answers `text` like [`Model::fill_mask`] and returns how long each planned node took
    /// (encoder, then head). Profiling costs a little time per node; for latency use
    /// [`Model::fill_mask_into`].
    pub fn profile(&mut self, text: &str, k: usize) -> Result<Vec<crate::profile::NodeTime>> {
        self.profiler = Some(vec![]);
        let r = self.fill_mask(text, k);
        let times = self.profiler.take().unwrap_or_default();
        r.map(|_| times)
    }

    /// Planned nodes that compute from the weights alone on every request (see
    /// [`crate::profile::weight_only_nodes`]); empty for a well-compiled model.
    pub fn weight_only_nodes(&self) -> Vec<String> {
        std::iter::once(&self.state)
            .chain(self.head.as_ref())
            .flat_map(|state| crate::profile::weight_only_nodes(state.model()))
            .collect()
    }

    /// The planned matrix products, one line each (see [`crate::profile::matmul_lines`]).
    pub fn matmul_lines(&self) -> Vec<String> {
        std::iter::once(&self.state)
            .chain(self.head.as_ref())
            .flat_map(|state| crate::profile::matmul_lines(state.model()))
            .collect()
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The matrix-product kernels the planned graph(s) use on this CPU, sorted and deduplicated:
    /// tract's (e.g. `arm64simd_mmm_f32_8x8_gen` on a Cortex-A72) and, for int8 models, bertling's
    /// own int8 kernels (`bertling_a7_avx2`, `bertling_a16_neon`, ...). `bertling info` prints them.
    pub fn kernels(&self) -> Vec<String> {
        use tract_core::ops::matmul::optimized::OptMatMul;
        let mut names: Vec<String> = std::iter::once(&self.state)
            .chain(self.head.as_ref())
            .flat_map(|state| state.model().nodes.iter())
            .filter_map(|node| node.op_as::<OptMatMul>())
            .flat_map(|op| op.mmm.iter().map(|k| k.name().to_string()))
            .collect();
        names.extend(
            std::iter::once(&self.state)
                .chain(self.head.as_ref())
                .flat_map(|state| state.model().nodes.iter())
                .filter_map(|node| node.op_as::<crate::int8::Int8Linear>())
                .map(|op| op.kernel_name().to_string()),
        );
        names.sort();
        names.dedup();
        names
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's own mask token, e.g. `[MASK]` or `<mask>`.
    pub fn mask_token(&self) -> &str {
        &self.manifest.special_tokens.mask.text
    }

    /// A token decoded on its own, as the Hugging Face pipeline's `token_str`. Empty for ids the
    /// tokenizer does not know (the model's vocabulary may be larger than the tokenizer's).
    pub fn token_str(&self, token: u32) -> &str {
        self.token_strs
            .get(token as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Tokenizes `text` as a request would (generic `[MASK]` substituted, special tokens added).
    pub fn encode(&mut self, text: &str) -> Result<&[u32]> {
        substitute_mask(
            text,
            &self.manifest.special_tokens.mask.text,
            &mut self.text_buf,
        );
        let enc = self
            .tokenizer
            .encode(self.text_buf.as_str(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        self.ids.clear();
        self.ids.extend_from_slice(enc.get_ids());
        self.type_ids.clear();
        self.type_ids.extend_from_slice(enc.get_type_ids());
        Ok(&self.ids)
    }

    /// Predicts the top `k` tokens for every mask in `text`. The result is a fixed-capacity value
    /// (no heap); [`Model::fill_mask_into`] fills one the caller owns instead.
    pub fn fill_mask(&mut self, text: &str, k: usize) -> Result<FillMask> {
        let mut result = FillMask::default();
        self.fill_mask_into(text, k, &mut result)?;
        Ok(result)
    }

    /// Like [`Model::fill_mask`], into a caller-owned result.
    pub fn fill_mask_into(&mut self, text: &str, k: usize, out: &mut FillMask) -> Result<()> {
        out.masks.clear();
        self.logits.clear();
        if k == 0 || k > MAX_TOP_K {
            return Err(Error::BadTopK { k, max: MAX_TOP_K });
        }
        self.encode(text)?;
        let n = self.ids.len();
        let max = self.manifest.max_tokens as usize;
        if n > max {
            return Err(Error::TooLong { tokens: n, max });
        }
        let mask_id = self.check_masks(&self.ids)?;

        self.forward(n, mask_id)?;
        let vocab = self.manifest.vocab_size as usize;
        let positions = self
            .ids
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == mask_id)
            .map(|(p, _)| p);
        for (i, pos) in positions.enumerate() {
            let mut pred = MaskPrediction {
                position: pos as u32,
                ..Default::default()
            };
            top_k_softmax(&self.logits[i * vocab..(i + 1) * vocab], k, &mut pred);
            // Capacity: masks <= MAX_MASKS was checked above.
            let _ = out.masks.push(pred);
        }
        Ok(())
    }

    /// The mask token's id, once `ids` holds between one and [`MAX_MASKS`] of it.
    fn check_masks(&self, ids: &[u32]) -> Result<u32> {
        let mask_id = self.manifest.special_tokens.mask.id;
        let masks = ids.iter().filter(|&&t| t == mask_id).count();
        if masks == 0 {
            return Err(Error::NoMask {
                generic: GENERIC_MASK,
                model: self.mask_token().to_string(),
            });
        }
        if masks > MAX_MASKS {
            return Err(Error::TooManyMasks {
                found: masks,
                max: MAX_MASKS,
            });
        }
        Ok(mask_id)
    }

    /// Runs the graph(s) on the current ids and leaves the mask rows' logits in `self.logits`.
    ///
    /// With a thread pool, the whole request runs on one of its threads: every operator that
    /// splits its work (bertling's int8 products, tract's matrix products) then hands parts to
    /// the other threads from inside the pool, instead of each one entering it from outside and
    /// waiting (~5% of a 2-thread request at ALBERT-base seq 128, ~10% at seq 16). bertling's own
    /// operators split theirs on the model's helper [`crate::threads::Team`], whose threads spin
    /// between a request's parts instead of being woken for each.
    fn forward(&mut self, n: usize, mask_id: u32) -> Result<()> {
        match self.executor.clone() {
            Some(Executor::MultiThread(pool)) => {
                let team = self.team.clone();
                pool.install(|| match team {
                    Some(team) => team.install(|| self.forward_here(n, mask_id)),
                    None => self.forward_here(n, mask_id),
                })
            }
            _ => self.forward_here(n, mask_id),
        }
    }

    fn forward_here(&mut self, n: usize, mask_id: u32) -> Result<()> {
        let infer = |e: TractError| Error::Inference(format!("{e:#}"));
        let inputs = crate::graph::input_tensors(&self.manifest.inputs, &self.ids, &self.type_ids)
            .map_err(infer)?;
        let outputs =
            crate::profile::run(&mut self.state, inputs, "encoder", self.profiler.as_mut())
                .map_err(infer)?;
        let rows = outputs[0]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(infer)?;
        let vocab = self.manifest.vocab_size as usize;
        let width = match self.manifest.output {
            OutputKind::AllPositionLogits => vocab,
            OutputKind::MaskedHead { hidden } | OutputKind::MaskedLayer { hidden } => {
                hidden as usize
            }
        };
        if rows.len() != n * width {
            return Err(Error::Inference(format!(
                "the graph returned {} values, expected {n} x {width}",
                rows.len()
            )));
        }
        self.positions.clear();
        self.positions.extend(
            self.ids
                .iter()
                .enumerate()
                .filter(|(_, &t)| t == mask_id)
                .map(|(p, _)| p as i64),
        );
        let m = self.positions.len();
        let head_inputs = match (self.manifest.output, &self.head) {
            // Logits at every position: keep the masks' rows.
            (_, None) => {
                gather_rows(rows, width, &self.positions, &mut self.logits);
                return Ok(());
            }
            // The head takes the encoder's output whole, and the mask positions.
            (OutputKind::MaskedLayer { .. }, Some(_)) => {
                let positions = Tensor::from_shape(&[m], &self.positions).map_err(infer)?;
                tvec![outputs[0].clone(), positions.into_tvalue()]
            }
            // The head takes the masks' rows.
            (_, Some(_)) => {
                gather_rows(rows, width, &self.positions, &mut self.hidden);
                let rank = self.head_input_shape.len();
                self.head_input_shape[rank - 2] = m;
                let hidden =
                    Tensor::from_shape(&self.head_input_shape, &self.hidden).map_err(infer)?;
                tvec![hidden.into_tvalue()]
            }
        };
        let Some(head) = self.head.as_mut() else {
            return Ok(());
        };
        let outputs = crate::profile::run(head, head_inputs, "head", self.profiler.as_mut())
            .map_err(infer)?;
        let logits = outputs[0]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(infer)?;
        if logits.len() != m * vocab {
            return Err(Error::Inference(format!(
                "the head returned {} logits, expected {m} x {vocab}",
                logits.len()
            )));
        }
        self.logits.clear();
        self.logits.extend_from_slice(logits);
        Ok(())
    }

    /// Token ids of the last request (special tokens included).
    pub fn last_input_ids(&self) -> &[u32] {
        &self.ids
    }

    /// Token type ids of the last request (as the tokenizer's template set them).
    pub fn last_type_ids(&self) -> &[u32] {
        &self.type_ids
    }

    /// Runs the model on token ids the caller built (special tokens included, `type_ids` as long
    /// as `ids`) and keeps the logits of every mask position, text order, for
    /// [`Model::last_logits`]. Text completion uses it to fill a word's pieces one at a time.
    /// Errors, never panics, on bad lengths, unknown ids, no mask or too many masks.
    pub fn forward_ids(&mut self, ids: &[u32], type_ids: &[u32]) -> Result<()> {
        self.logits.clear();
        let n = ids.len();
        let max = self.manifest.max_tokens as usize;
        if n > max {
            return Err(Error::TooLong { tokens: n, max });
        }
        if type_ids.len() != n {
            return Err(Error::Inference(format!(
                "{n} token ids but {} type ids",
                type_ids.len()
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&t| t >= self.manifest.vocab_size) {
            return Err(Error::Inference(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.manifest.vocab_size
            )));
        }
        let mask_id = self.check_masks(ids)?;
        self.ids.clear();
        self.ids.extend_from_slice(ids);
        self.type_ids.clear();
        self.type_ids.extend_from_slice(type_ids);
        self.forward(n, mask_id)
    }

    /// The vocabulary as text completion classifies it ([`crate::complete`]).
    pub fn lexicon(&self) -> &crate::complete::Lexicon {
        &self.lexicon
    }

    /// The full mask-position logits of the last request, for mask number `mask` (text order).
    pub fn last_logits(&self, mask: usize) -> Option<&[f32]> {
        let vocab = self.manifest.vocab_size as usize;
        self.logits.get(mask * vocab..(mask + 1) * vocab)
    }

    /// The last request's text with mask number `mask` replaced by `token`, decoded as the
    /// Hugging Face pipeline's `sequence`: special tokens are dropped when the text held one mask,
    /// kept (other masks included) when it held several.
    pub fn filled_sequence(
        &self,
        masks_in_request: &FillMask,
        mask: usize,
        token: u32,
    ) -> Result<String> {
        let pos = masks_in_request
            .masks
            .get(mask)
            .ok_or_else(|| Error::NoSuchPrediction(format!("mask {mask}")))?
            .position as usize;
        let pad = self.manifest.special_tokens.pad.as_ref().map(|p| p.id);
        let ids: Vec<u32> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, &t)| if i == pos { token } else { t })
            .filter(|&t| Some(t) != pad)
            .collect();
        let single = masks_in_request.masks.len() == 1;
        let s = self
            .tokenizer
            .decode(&ids, single)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(if self.manifest.clean_up_tokenization_spaces {
            clean_up_tokenization(&s)
        } else {
            s
        })
    }
}

/// Replaces `out` by the rows `positions` of `rows` (rows of `width` values).
fn gather_rows(rows: &[f32], width: usize, positions: &[i64], out: &mut Vec<f32>) {
    out.clear();
    for &p in positions {
        let start = p as usize * width;
        out.extend_from_slice(&rows[start..start + width]);
    }
}

/// Refuses a graph whose operators need a newer format than the file's header names (a file
/// relabelled by hand, or written by a bertling that got the version wrong): their attributes
/// would be read with a meaning the file's version never had.
fn check_format_version(graph: &TypedModel, version: u32) -> Result<()> {
    for node in &graph.nodes {
        if let Some(op) = node.op_as::<crate::int8::Int8Linear>() {
            let needs = op.min_format_version();
            if needs > version {
                let name = &node.name;
                return Err(Error::Inconsistent(format!(
                    "the file says format {version}, but its int8 product {name:?} needs format \
                     {needs}"
                )));
            }
        }
    }
    Ok(())
}

/// A [`OutputKind::MaskedLayer`] head must take hidden states `[.., hidden]` and positions
/// (i64 `[M]`), and return one output.
fn check_layer_head(head: &TypedModel, hidden: usize) -> Result<()> {
    let ok = head.inputs.len() == 2
        && head.outputs.len() == 1
        && head.input_fact(0).is_ok_and(|f| {
            f.rank() >= 2 && f.shape[f.rank() - 1].to_i64().ok() == Some(hidden as i64)
        })
        && head
            .input_fact(1)
            .is_ok_and(|f| f.rank() == 1 && f.datum_type == i64::datum_type());
    if !ok {
        return Err(Error::Inconsistent(format!(
            "the head's inputs {:?} are not hidden states [.., {hidden}] and positions [M]",
            head.inputs
                .iter()
                .map(|&i| head.outlet_fact(i).map(|f| format!("{f:?}")))
                .collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// The head's input must be `[1, .., 1, M, hidden]`; returns its shape with a placeholder for M.
fn head_input_shape(head: &TypedModel, hidden: usize) -> Result<Vec<usize>> {
    let fact = head.input_fact(0).map_err(graph_err)?;
    let bad = || {
        Error::Inconsistent(format!(
            "the head's input {fact:?} is not [.., M, {hidden}]"
        ))
    };
    let rank = fact.rank();
    if head.inputs.len() != 1 || head.outputs.len() != 1 || rank < 2 {
        return Err(bad());
    }
    if fact.shape[rank - 1].to_i64().ok() != Some(hidden as i64) {
        return Err(bad());
    }
    if !fact
        .shape
        .iter()
        .take(rank - 2)
        .all(|d| d.to_i64().ok() == Some(1))
    {
        return Err(bad());
    }
    let mut shape = vec![1; rank];
    shape[rank - 1] = hidden;
    Ok(shape)
}

/// The tokenizer must agree with the manifest: the special tokens at their ids, and no id the
/// model cannot embed.
fn check_tokenizer(manifest: &Manifest, tokenizer: &Tokenizer) -> Result<()> {
    let size = tokenizer.get_vocab_size(true);
    if size > manifest.vocab_size as usize {
        return Err(Error::Inconsistent(format!(
            "the tokenizer has {size} tokens but the model embeds only {}",
            manifest.vocab_size
        )));
    }
    let st = &manifest.special_tokens;
    for tok in [
        Some(&st.mask),
        st.pad.as_ref(),
        st.cls.as_ref(),
        st.sep.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if tokenizer.token_to_id(&tok.text) != Some(tok.id) {
            return Err(Error::Inconsistent(format!(
                "special token {} is not id {} in the tokenizer",
                tok.text, tok.id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod release_tests {
    use super::release_pages;

    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let path = std::env::temp_dir().join(format!("bertling-release-{}", std::process::id()));
        let bytes: Vec<u8> = (0..5 * 65536 + 123).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a private read-only mapping of a file this test alone writes.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        assert_eq!(&map[..], &bytes[..]);
        // Ragged ranges: inside a page, across pages, the end of the file, all of it.
        for (a, b) in [
            (10, 20),
            (1000, 200_000),
            (70_000, bytes.len()),
            (0, bytes.len()),
        ] {
            release_pages(&map, &map[a..b]);
            assert_eq!(&map[..], &bytes[..], "after releasing {a}..{b}");
        }
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
