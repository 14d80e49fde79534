//! Text prompts of an exact token length, built with the model's own HF tokenizer.
//!
//! The workload generator draws token ids; a server that only takes text (Ferrum's
//! `/v1/chat/completions`, any chat route) gets those ids decoded to text. Decoding and
//! re-encoding is not the identity (byte-level BPE merges across id boundaries), so the text is
//! adjusted until it re-encodes (without special tokens) to exactly the requested count, as
//! Ferrum's bench-serve does: too long → cut the re-encoded ids to the target and decode again;
//! too short → append ids from the original draw and decode again; up to 32 rounds, then filler
//! words. The server still adds its chat template's tokens on top; the client records its own
//! count per request and the server's `usage.prompt_tokens` beside it.

use std::path::Path;

use tokenizers::Tokenizer;

/// A loaded tokenizer.
pub struct TextPrompts {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for TextPrompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextPrompts")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

/// Rounds of the adjust loop before falling back to filler words.
const ROUNDS: usize = 32;

impl TextPrompts {
    /// Load `tokenizer.json`.
    pub fn load(path: &Path) -> Result<TextPrompts, String> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| format!("cannot load tokenizer `{}`: {e}", path.display()))?;
        Ok(TextPrompts { tokenizer })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> u32 {
        self.tokenizer.get_vocab_size(true) as u32
    }

    fn count(&self, text: &str) -> Result<usize, String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .map_err(|e| format!("tokenizer cannot encode a prompt: {e}"))
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("tokenizer cannot encode a prompt: {e}"))
    }

    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| format!("tokenizer cannot decode prompt ids: {e}"))
    }

    /// Text for `ids` that re-encodes to `ids.len()` tokens, and the count it really has (equal
    /// to `ids.len()` except when no adjustment converged).
    pub fn build(&self, ids: &[u32]) -> Result<(String, usize), String> {
        let target = ids.len();
        let mut text = self.decode(ids)?;
        let mut best = (text.clone(), self.count(&text)?);
        for round in 0..ROUNDS {
            let enc = self.encode(&text)?;
            let n = enc.len();
            if n.abs_diff(target) < best.1.abs_diff(target) {
                best = (text.clone(), n);
            }
            if n == target {
                return Ok((text, n));
            }
            let next: Vec<u32> = if n > target {
                enc[..target].to_vec()
            } else {
                let mut v = enc;
                let missing = target - n;
                v.extend(ids.iter().cycle().skip(round).take(missing));
                v
            };
            text = self.decode(&next)?;
        }
        // Filler words: each usually one token; add or drop until exact or stuck.
        let (mut text, mut n) = best;
        for _ in 0..target.max(8) {
            if n == target {
                break;
            }
            if n < target {
                text.push_str(" x");
            } else {
                let cut = text.char_indices().last().map_or(0, |(i, _)| i);
                text.truncate(cut);
            }
            n = self.count(&text)?;
        }
        Ok((text, n))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A word-level tokenizer of `words` words `w0`…: every id decodes to one space-separated
    /// word, so re-encoding is exact (the simplest tokenizer the client must handle).
    pub(crate) fn word_level_json(words: usize) -> String {
        let vocab: Vec<String> = (0..words).map(|i| format!("\"w{i}\":{i}")).collect();
        format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,
            "decoder":null,"model":{{"type":"WordLevel","vocab":{{{}}},"unk_token":"w0"}}}}"#,
            vocab.join(",")
        )
    }

    #[test]
    fn word_level_prompts_have_the_exact_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, word_level_json(300)).unwrap();
        let p = TextPrompts::load(&path).unwrap();
        assert_eq!(p.vocab_size(), 300);
        let ids: Vec<u32> = (0..64).map(|i| 4 + (i * 37) % 290).collect();
        let (text, n) = p.build(&ids).unwrap();
        assert_eq!(n, 64);
        assert_eq!(p.count(&text).unwrap(), 64);
        assert!(TextPrompts::load(&dir.path().join("missing.json")).is_err());
    }

    #[test]
    fn byte_level_bpe_prompts_are_adjusted_to_the_exact_length() {
        // A byte-level BPE over printable ASCII with a few merges: decode/encode is not the
        // identity, so the adjust loop has work to do.
        let mut vocab: Vec<String> = (33u8..127)
            .map(|b| {
                let c = b as char;
                let s = match c {
                    '"' => "\\\"".to_string(),
                    '\\' => "\\\\".to_string(),
                    c => c.to_string(),
                };
                format!("\"{s}\":{}", b - 33)
            })
            .collect();
        vocab.push("\"Ġ\":94".into());
        vocab.push("\"ab\":95".into());
        vocab.push("\"Ġa\":96".into());
        vocab.push("\"abc\":97".into());
        let json = format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,
            "pre_tokenizer":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
            "post_processor":null,
            "decoder":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
            "model":{{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
            "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
            "vocab":{{{}}},"merges":["a b","Ġ a","ab c"]}}}}"#,
            vocab.join(",")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        let p = TextPrompts::load(&path).unwrap();
        for len in [1usize, 7, 64, 256] {
            // ids 0, 1, 2 are `!`, `"`, `#`; 64 = `a`, 65 = `b`, 66 = `c`, 94 = `Ġ`: merges apply.
            let ids: Vec<u32> = (0..len as u32)
                .map(|i| [64, 65, 66, 94, 3, 64][i as usize % 6])
                .collect();
            let (text, n) = p.build(&ids).unwrap();
            assert_eq!(n, len, "{text:?}");
            assert_eq!(p.count(&text).unwrap(), len);
        }
    }
}
