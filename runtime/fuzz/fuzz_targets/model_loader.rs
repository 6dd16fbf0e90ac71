//! The model loader on any bytes, twice: as they are (every checksum must catch the damage: an
//! error, never a panic), and "resealed" — the manifest decoded without its checksum, every section
//! taken where the manifest says, and the file rewritten with fresh checksums — so that mutations
//! of a real model file (the corpus seeds: `scripts/fuzz-loader.sh` compiles the fixtures) reach
//! the manifest, tokenizer, NNEF and tract code behind the checksums. Neither may panic.
#![no_main]

use bertling::format::{self, Manifest, HEADER_LEN};
use bertling::Model;
use libfuzzer_sys::fuzz_target;

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn resealed(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let (off, len) = (u64_at(data, 16)? as usize, u64_at(data, 24)? as usize);
    let manifest: Manifest = postcard::from_bytes(data.get(off..off.checked_add(len)?)?).ok()?;
    let mut sections = vec![];
    for s in &manifest.sections {
        let (o, l) = (s.offset as usize, s.len as usize);
        sections.push((s.kind, data.get(o..o.checked_add(l)?)?));
    }
    format::write(manifest.clone(), &sections).ok()
}

fuzz_target!(
    // libfuzzer-sys aborts on any panic, even one the code under test catches. bertling turns a
    // panic inside tract or the tokenizer into an error on purpose (a crafted file with valid
    // checksums can reach them), so the default hook is restored: a panic that escapes
    // `Model::from_bytes` / `fill_mask` still reaches libfuzzer-sys's own catch and aborts.
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    if let Ok(mut model) = Model::from_bytes(data) {
        let _ = model.fill_mask("a [MASK] b", 3);
    }
    if let Some(image) = resealed(data) {
        if let Ok(mut model) = Model::from_bytes(&image) {
            let _ = model.fill_mask("The [MASK] is [MASK].", 5);
        }
    }
    }
);
